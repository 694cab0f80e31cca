"""Every Kafka topic and header name of wattstream (docs/architecture.md). Bridges import this leaf too.

Keys: raw topics are keyed by device id (or the origin when the bridge does not know the device),
`meter.readings`, `.5m` and `meter.averages.10m` by `meter_id`, `meter.readings.site` (the grid, PV,
charger and battery meters' readings, forwarded, and the chargers' mode sets) and `power.surplus` by
site — so one meter's records stay in order on one partition and its state lives in one worker.
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
# On a raw record that carries several payloads, each with its own key and headers (`pipeline.envelope`):
# the envelope format's version.
H_ENVELOPE: Final = "envelope"

# Header on the records an agent produces from its input (`meter.readings`, `meter.readings.site`):
# `<topic>/<partition>/<offset>/<index>` of the input record it came from and its place among that
# record's outputs (of an envelope's payload `item`: `item << 20 | place`). A kill can make an agent
# send an output again; the agent downstream knows the repeat by this (pipeline/agents/state.py).
H_POSITION: Final = "position"

# Header on a `meter.readings.site` record that is not a reading but a charger's mode set
# (`models.ModeCommand`, value `mode`), produced by `wattstream charger` from MQTT.
H_COMMAND: Final = "command"
COMMAND_MODE: Final = b"mode"

# Headers added on dead-letter records (the value and the original headers are kept unchanged).
H_STAGE: Final = "stage"  # where it failed: `pipeline.errors.Stage`
H_REASON: Final = "reason"  # the kind of failure: `pipeline.errors.Reason`
H_ERROR: Final = "error"  # what exactly, human readable
H_SOURCE_TOPIC: Final = "source_topic"


def raw_topic(driver: str) -> str:
    """The raw topic of one driver: `meter.raw.<driver>`."""
    return f"{RAW_PREFIX}{driver}"
