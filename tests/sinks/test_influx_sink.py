"""InfluxSink against the real InfluxDB (through the v2 write forwarder)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.errors import SinkRejected, SinkUnavailable
from pipeline.models import Reading, Values
from pipeline.settings import InfluxSettings
from pipeline.sinks.influx import InfluxSink
from tests.conftest import Influx
from wattstream.embedded.servers import free_port

T0 = datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC)


def readings(n: int, meter: str = "iammeter:SINK0001") -> list[Reading]:
    return [Reading(meter_id=meter, driver="iammeter", ts=T0 + timedelta(seconds=i), received_at=T0,
                    total=Values(power_w=100.0 + i, energy_import_wh=1000 + i),
                    phases={"L1": Values(voltage_v=230.0)}) for i in range(n)]


def write(settings: InfluxSettings, batch: list[Reading]) -> None:
    async def go() -> None:
        sink = InfluxSink(settings)
        try:
            await sink.write(batch)
        finally:
            await sink.close()

    asyncio.run(go())


def test_writes_are_exact_and_idempotent(influx: Influx) -> None:
    settings = InfluxSettings(url=influx.url, bucket=influx.bucket)
    write(settings, readings(50))
    write(settings, readings(50))  # a replay after a crash
    rows = influx.query("SELECT power_w, energy_import_wh FROM readings WHERE phase = 'total'")
    assert len(rows) == 50
    assert rows[0] == {"time": "2025-06-01T10:00:00Z", "power_w": 100, "energy_import_wh": 1000}
    assert rows[49]["energy_import_wh"] == 1049
    assert len(influx.query("SELECT voltage_v FROM readings WHERE phase = 'L1'")) == 50


def test_unreachable_influxdb_is_transient() -> None:
    with pytest.raises(SinkUnavailable, match="unreachable"):
        write(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", timeout_ms=2000), readings(1))


def test_field_type_conflict_is_a_rejection(influx: Influx) -> None:
    import urllib.request

    # same shard as the readings (InfluxDB checks field types per shard)
    line = b'readings,meter=x,driver=x,phase=total power_w="a string" 1748772000000000000'
    urllib.request.urlopen(urllib.request.Request(f"{influx.url}/api/v2/write?bucket={influx.bucket}",
                                                  data=line, method="POST"), timeout=10)
    with pytest.raises(SinkRejected, match="400"):
        write(InfluxSettings(url=influx.url, bucket=influx.bucket), readings(1))
