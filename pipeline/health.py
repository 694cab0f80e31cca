"""Pipeline health: what each stage did, as Prometheus metrics (the worker's `/metrics`, port
`WATTSTREAM_WORKER_METRICS_PORT`) and, every `WATTSTREAM_WORKER_HEALTH_SECONDS`, as points of the
InfluxDB measurement `pipeline` for the Grafana pipeline dashboard. Counters count since the worker
started (Prometheus' convention; `non_negative_derivative` gives rates), tagged by `worker`.

The metrics, their fields and labels: docs/operations.md, "Pipeline health".
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "wattstream_"
MEASUREMENT = "pipeline"

RECORDS = Counter(f"{PREFIX}records", "Input records applied, by agent", ["agent"])
READINGS = Counter(f"{PREFIX}readings", "Readings decoded, by driver", ["driver"])
DEADLETTERS = Counter(f"{PREFIX}deadletters", "Records sent to meter.deadletter, by stage, reason and source topic",
                      ["stage", "reason", "source"])
SINK_WRITE = Histogram(f"{PREFIX}sink_write_seconds", "Successful sink writes (a batch each), by sink", ["sink"])
SINK_FAILURES = Counter(f"{PREFIX}sink_failures", "Sink writes that failed (held and retried, or split), by sink",
                        ["sink"])
LAG = Gauge(f"{PREFIX}consumer_lag", "Records of an input partition not yet applied, by agent and partition",
            ["agent", "partition"])


def lines(worker: str, now_us: int, registry: CollectorRegistry = REGISTRY) -> list[str]:
    """The `wattstream_*` samples as line protocol of the measurement `pipeline`, microsecond time like
    every wattstream point (histogram buckets and `_created` stamps left out)."""
    from pipeline.sinks.line_protocol import line, series  # (not at the top: `pipeline.sinks` imports this module)

    out = []
    for metric in registry.collect():
        if not metric.name.startswith(PREFIX):
            continue
        for sample in metric.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            text = line(series(MEASUREMENT, {**sample.labels, "worker": worker}),
                        {sample.name.removeprefix(PREFIX): float(sample.value)}, now_us)
            if text is not None:  # (a NaN sample has none)
                out.append(text)
    return out
