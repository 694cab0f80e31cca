"""`pipeline.health.lines`: Prometheus samples → the InfluxDB measurement `pipeline` (pure; the worker's
/metrics and the points it writes are in tests/integration/test_health_e2e.py)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.health import lines


def test_samples_become_pipeline_points_without_buckets() -> None:
    registry = CollectorRegistry()
    Counter("wattstream_readings", "", ["driver"], registry=registry).labels("iammeter").inc(3)
    Gauge("wattstream_consumer_lag", "", ["agent", "partition"], registry=registry).labels("readings", "2").set(7)
    Histogram("wattstream_sink_write_seconds", "", ["sink"], registry=registry).labels("influxdb").observe(0.25)
    Counter("other_total", "", registry=registry).inc()  # not ours: left out
    assert lines("w1@host", 1_750_496_400_000_000, registry) == [
        "pipeline,driver=iammeter,worker=w1@host readings_total=3 1750496400000000",
        "pipeline,agent=readings,partition=2,worker=w1@host consumer_lag=7 1750496400000000",
        "pipeline,sink=influxdb,worker=w1@host sink_write_seconds_count=1 1750496400000000",
        "pipeline,sink=influxdb,worker=w1@host sink_write_seconds_sum=0.25 1750496400000000",
    ]
