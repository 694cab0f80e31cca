"""Edge I/O only: MQTT and serial in, raw bytes to Kafka unchanged with their headers;
the surplus signal out to chargers. No Faust here."""
