"""The record-by-record comparison of what a faulty run left in InfluxDB, Kafka and the daily files with the
fault-free reference (`tests.faults.stream`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import topics
from pipeline.logic.windows import WindowConfig
from pipeline.models import Average, Reading, SurplusSignal, from_us, to_us
from pipeline.settings import FilesSettings
from pipeline.sinks.files import FileSink, average_lines, reading_lines
from tests.faults.stream import Reference

PointKey = tuple[str, str, datetime]  # (meter or site, phase, time)
Fields = dict[str, Any]
SHOWN = 12  # problems listed per check; the rest are counted


def stamp(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reading_points(readings: Iterable[Reading]) -> dict[PointKey, Fields]:
    """The fields of the InfluxDB points of `readings` / `readings_5m` (as `pipeline.sinks.influx` maps them)."""
    points = {}
    for r in readings:
        for phase, values in r.scopes():
            fields: Fields = {**values.present(), **(r.extra if phase == "total" else {})}
            if fields:
                points[r.meter_id, phase, r.ts] = {"driver": r.driver, **fields}
    return points


def average_points(averages: Iterable[Average]) -> dict[PointKey, Fields]:
    points = {}
    for a in averages:
        for phase, stats in a.scopes():
            fields: Fields = {"driver": a.driver}
            for name, s in {**stats, **(a.extra if phase == "total" else {})}.items():
                fields |= {f"{name}_mean": s.mean, f"{name}_min": s.min, f"{name}_max": s.max,
                           f"{name}_count": s.count}
                if s.delta is not None:
                    fields[f"{name}_delta"] = s.delta
            if len(fields) > 1:
                points[a.meter_id, phase, a.start] = fields
    return points


def surplus_points(signals: Iterable[SurplusSignal]) -> dict[PointKey, Fields]:
    """Without `pv_w`: the PV value shown depends on how the grid and PV partitions interleaved."""
    return {(s.site, "", s.ts): {"grid_w": s.grid_w, "charger_w": s.charger_w, "surplus_w": s.surplus_w,
                                  "charging": int(s.charge), "phases": s.phases, "current_a": s.current_a,
                                  "power_w": s.power_w, "reason": s.reason} for s in signals}


def influx_points(rows: Iterable[Mapping[str, Any]], key: tuple[str, str]) -> dict[PointKey, Fields]:
    """Rows of `SELECT * ... GROUP BY *` → points by (key tag, phase tag, time); null fields dropped."""
    points = {}
    for row in rows:
        ts = datetime.fromisoformat(row["time"])
        fields = {k: v for k, v in row.items() if v is not None and k not in ("time", *key)}
        points[row[key[0]], row.get(key[1], ""), ts] = fields
    return points


def _where(key: PointKey) -> str:
    return " ".join(part for part in (key[0], key[1], stamp(key[2])) if part)


def wrong_points(expected: Mapping[PointKey, Fields], actual: Mapping[PointKey, Fields],
                 ignore: Iterable[str] = ()) -> dict[PointKey, str]:
    """Every point that is missing, extra or has a field of another value, with what is wrong."""
    wrong = {k: "missing" for k in expected.keys() - actual.keys()}
    wrong |= {k: f"not in the reference ({_short(actual[k])})" for k in actual.keys() - expected.keys()}
    for k in expected.keys() & actual.keys():
        want, got = expected[k], {f: v for f, v in actual[k].items() if f not in ignore}
        diffs = [f"{f} expected {want.get(f)!r}, got {got.get(f)!r}"
                 for f in sorted((f for f in want.keys() | got.keys() if want.get(f) != got.get(f)), key=_importance)]
        if diffs:
            wrong[k] = "; ".join(diffs[:4]) + (f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else "")
    return wrong


def point_problems(wrong: Mapping[PointKey, str]) -> list[str]:
    return [f"{_where(k)}: {wrong[k]}" for k in sorted(wrong)]


def _short(fields: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in sorted(fields.items()))
    return text if len(text) <= 160 else text[:157] + "..."


def bucket_problems(expected: Iterable[Reading], actual: Iterable[PointKey], config: WindowConfig) -> list[str]:
    """`readings_5m`: exactly the reference's one point per meter and 5-minute bucket."""

    def bucket(ts: datetime) -> datetime:
        us = to_us(ts)
        return from_us(us - us % config.debounce_us)

    want = {(r.meter_id, bucket(r.ts)): [r.ts] for r in expected}
    got: dict[tuple[str, datetime], set[datetime]] = defaultdict(set)
    for meter, _, ts in actual:
        got[meter, bucket(ts)].add(ts)
    problems = []
    for key in sorted(want.keys() | got.keys()):
        times, wanted = sorted(got.get(key, set())), want.get(key, [])
        if times != wanted:
            problems.append(f"{key[0]} bucket {stamp(key[1])}: {len(times)} point(s) [{', '.join(map(stamp, times))}]"
                            f", expected [{', '.join(map(stamp, wanted))}]")
    return problems


@dataclass(frozen=True)
class Topic:
    """How a topic's records are identified and compared with the reference."""

    name: str
    identity: Callable[[Any], tuple[Any, ...]]  # of the parsed record
    parse: Callable[[bytes], Any]
    comparable: Callable[[Any], Any] = lambda record: record


TOPICS = {
    "readings": Topic(topics.READINGS, lambda r: (r.meter_id, r.ts), Reading.from_json),
    "readings_5m": Topic(topics.READINGS_5M, lambda r: (r.meter_id, r.ts), Reading.from_json),
    "averages": Topic(topics.AVERAGES_10M, lambda a: (a.meter_id, a.start), Average.from_json),
    "surplus": Topic(topics.SURPLUS, lambda s: (s.site, s.ts), SurplusSignal.from_json,
                     lambda s: s.model_copy(update={"pv_w": None})),
}


def topic_problems(topic: Topic, records: list[tuple[bytes, bytes]], expected: Iterable[Any]) -> tuple[list[str], int]:
    """Each reference record there, none other; a repeat only as an identical copy (`comparable`).
    → (problems, repeated copies)."""
    want = {topic.identity(r): topic.comparable(r) for r in expected}
    copies: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for _, value in records:
        record = topic.parse(value)
        copies[topic.identity(record)].append(record)
    problems = [f"{_ident(i)}: missing" for i in sorted(want.keys() - copies.keys())]
    problems += [f"{_ident(i)}: not in the reference" for i in sorted(copies.keys() - want.keys())]
    for ident in sorted(want.keys() & copies.keys()):
        first, *others = [topic.comparable(r) for r in copies[ident]]
        if any(other != first for other in others):
            different = next(other for other in others if other != first)
            problems.append(f"{_ident(ident)}: {len(others) + 1} copies that differ: "
                            f"{_diff(first, different, ('first copy', 'another'))}")
        elif first != want[ident]:
            problems.append(f"{_ident(ident)}: differs from the reference: {_diff(want[ident], first)}")
    return problems, sum(len(c) - 1 for c in copies.values())


def _ident(ident: tuple[Any, ...]) -> str:
    return " ".join(stamp(p) if isinstance(p, datetime) else str(p) for p in ident)


def _diff(want: Any, got: Any, words: tuple[str, str] = ("expected", "got")) -> str:
    """The leaves that differ (`count`, `total.power_w.mean`, ...), counts and deltas first."""
    a, b = _leaves(want.model_dump()), _leaves(got.model_dump())
    keys = sorted((k for k in a.keys() | b.keys() if a.get(k) != b.get(k)), key=_importance)
    shown = "; ".join(f"{k} {words[0]} {a.get(k)!r}, {words[1]} {b.get(k)!r}" for k in keys[:4])
    return shown + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for name, item in value.items()
                for k, v in _leaves(item, f"{path}.{name}" if path else str(name)).items()}
    return {path: value}


def _importance(name: str) -> tuple[int, str]:
    """Counts first (the number of readings in a window), then energy deltas, then the rest."""
    return (0 if name.endswith("count") else 1 if name.endswith("delta") else 2, name)


def surplus_sequence_problems(records: list[tuple[bytes, bytes]], decisions: list[SurplusSignal]) -> list[str]:
    """A consumer that keeps a decision only when it is later than the last one kept sees the backtest's."""
    kept: list[SurplusSignal] = []
    for _, value in records:
        signal = SurplusSignal.from_json(value).model_copy(update={"pv_w": None})
        if not kept or signal.ts > kept[-1].ts:
            kept.append(signal)
    want = [s.model_copy(update={"pv_w": None}) for s in decisions]
    for i, (a, b) in enumerate(zip(want, kept, strict=False)):
        if a != b:
            return [f"decision {i} ({stamp(a.ts)}): expected {a.reason!r} charge={a.charge}, got {stamp(b.ts)} "
                    f"{b.reason!r} charge={b.charge}"]
    if len(kept) != len(want):
        return [f"{len(kept)} decisions in time order, expected {len(want)}"]
    return []


def file_lines(ref: Reference) -> dict[str, Counter[str]]:
    """The lines the file sink writes for the reference (zone UTC), by file name."""
    sink = FileSink(FilesSettings(tz="UTC"))
    files: dict[str, Counter[str]] = defaultdict(Counter)
    for reading in ref.readings:
        for local, line in reading_lines(reading, UTC):
            files[sink.path_for(local).name][line] += 1
    for average in ref.averages:
        for local, line in average_lines(average, UTC):
            files[sink.path_for(local, "sum").name][line] += 1
    return files


def file_problems(expected: Mapping[str, Counter[str]], directory: Path) -> tuple[list[str], int, int]:
    """The files of `directory` as multisets of lines: no line missing, none extra, none twice.
    → (a problem per file, time and meter whose lines differ, missing first; lines missing; lines extra)."""
    first: list[str] = []
    then: list[str] = []
    missing_lines = extra_lines = 0
    actual = {path.name: Counter(path.read_text().splitlines()) for path in directory.glob("*.txt")}
    for name in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(name, Counter()), actual.get(name, Counter())
        missing, extra = want - got, got - want
        missing_lines, extra_lines = missing_lines + sum(missing.values()), extra_lines + sum(extra.values())
        groups: dict[tuple[str, str], tuple[Counter[str], Counter[str]]] = defaultdict(lambda: (Counter(), Counter()))
        for lines, side in ((missing, 0), (extra, 1)):
            for line, n in lines.items():
                fields = line.split(",", 2)  # time, meter, the rest; a cut line has fewer
                groups[(fields[0], fields[1]) if len(fields) == 3 else ("", "(cut lines)")][side][line] += n
        for (stamp_, meter), (lost, more) in sorted(groups.items()):
            example = f"missing {min(lost)!r}" if lost else f"extra {min(more)!r}"
            problem = (f"{name} {meter} {stamp_}".rstrip() + f": {sum(lost.values())} line(s) missing, "
                       f"{sum(more.values())} extra, e.g. {example}")
            (first if lost else then).append(problem)
    return first + then, missing_lines, extra_lines


@dataclass
class Findings:
    """Checks and their problems, for one message that names the seed."""

    seed: int
    failed: dict[str, list[str]] = field(default_factory=dict)

    def check(self, name: str, problems: list[str], summary: str) -> None:
        print(f"[faults seed={self.seed}] {name}: {summary}"
              + (f" — {len(problems)} problem(s)" if problems else " — as the reference"))
        if problems:
            self.failed[name] = problems

    def message(self) -> str:
        parts = [f"not exactly the fault-free reference (seed {self.seed}: WATTSTREAM_FAULT_SEED={self.seed} "
                 "repeats the kill schedule):"]
        for name, problems in self.failed.items():
            parts.append(f"- {name}: {len(problems)} problem(s)")
            parts += [f"    {p}" for p in problems[:SHOWN]]
            if len(problems) > SHOWN:
                parts.append(f"    ... and {len(problems) - SHOWN} more")
        return "\n".join(parts)
