"""Edge I/O only (STYLE 5): MQTT and serial in, raw bytes to Kafka unchanged with their headers;
the surplus signal out to chargers. No Faust here."""
