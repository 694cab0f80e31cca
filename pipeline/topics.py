"""Every Kafka topic and header name of wattstream (DESIGN §2). Bridges import this leaf too.

Keys: raw topics are keyed by device id (or the origin when the bridge does not know the device),
`meter.readings`, `.5m` and `meter.averages.10m` by `meter_id`, `meter.readings.site` (the grid, PV and
charger meters' readings, forwarded) and `power.surplus` by site — so one meter's
records stay in order on one partition and its state lives in one worker.
"""

from typing import Final

RAW_PREFIX: Final = "meter.raw."
READINGS: Final = "meter.readings"
READINGS_5M: Final = "meter.readings.5m"
AVERAGES_10M: Final = "meter.averages.10m"
SURPLUS: Final = "power.surplus"
SITE_READINGS: Final = "meter.readings.site"  # readings of the meters that feed a site's surplus, by site
DEADLETTER: Final = "meter.deadletter"

# Headers on raw records (set by the bridges).
H_DRIVER: Final = "driver"
H_ORIGIN: Final = "origin"  # MQTT topic or serial port
H_RECEIVED_AT: Final = "received_at"  # ISO 8601 UTC, when the bridge received the bytes

# Headers added on dead-letter records (the value and the original headers are kept unchanged).
H_STAGE: Final = "stage"  # frame | decrypt | decode | sink
H_ERROR: Final = "error"  # the reason, human readable
H_SOURCE_TOPIC: Final = "source_topic"


def raw_topic(driver: str) -> str:
    """The raw topic of one driver: `meter.raw.<driver>`."""
    return f"{RAW_PREFIX}{driver}"
