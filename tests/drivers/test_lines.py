"""Serial line sensors: the accepted line forms, the framer, bad lines."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.drivers.lines import MAX_LINE, LineFramer, decode
from pipeline.errors import FrameError, IngestError
from pipeline.models import Values

AT = datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC)


def test_keilog_csv_form() -> None:
    [reading] = decode(b"greenhouse,temperature_c,21.5", received_at=AT)
    assert (reading.meter_id, reading.driver, reading.ts) == ("lines:greenhouse", "lines", AT)
    assert reading.extra == {"temperature_c": 21.5} and reading.total == Values()
    [with_data_id] = decode(b"BR, E7 , -840,X", received_at=AT)
    assert with_data_id.meter_id == "lines:BR" and with_data_id.extra == {"E7": -840.0}


def test_json_form_and_electrical_fields() -> None:
    [reading] = decode(b'{"unit": "shed", "humidity_pct": 40, "power_w": 12.5, "energy_import_wh": 1000}',
                       received_at=AT)
    assert reading.meter_id == "lines:shed"
    assert reading.total == Values(power_w=12.5, energy_import_wh=1000)
    assert reading.extra == {"humidity_pct": 40.0}


def test_json_without_unit_takes_the_bridge_device() -> None:
    [reading] = decode(b'{"temperature_c": 4}', received_at=AT, device_id="fridge")
    assert reading.meter_id == "lines:fridge"


@pytest.mark.parametrize(("line", "text"), [
    (b"a,b", "expects UnitID,SensorID,Value"),
    (b"a,b,c", "sensor b value is not a number: 'c'"),
    (b"a,b,nan", "not finite"),
    (b'{"unit": "a", "t": ' + b"9" * 400 + b"}", "not finite"),  # a JSON integer beyond any float
    (b"a b,t,1", "unit id must be"),
    (b'{"unit": "u"}', "no sensor value"),
    (b'{"t": 1}', "no unit id"),
    (b'{"unit": "u", "t": true}', "not a number: True"),
    (b'{"unit": "u", "energy_import_wh": 1.5}', "whole number"),
    (b"[1]", "expects UnitID"),
    (b"{nope", "JSON does not parse"),
    (b"\xff", "not UTF-8"),
])
def test_bad_lines(line: bytes, text: str) -> None:
    with pytest.raises(FrameError) as info:
        decode(line, received_at=AT)
    assert text in str(info.value)


def test_framer_at_every_split_offset() -> None:
    stream = b"\x00garbage\r\n# comment\r\n\r\nu,t,1\r\nu,t,2\n{\"unit\":\"v\",\"h\":3}\r\npartial"
    expected = [b"\x00garbage", b"u,t,1", b"u,t,2", b'{"unit":"v","h":3}']
    for split in range(len(stream) + 1):
        framer = LineFramer()
        assert [*framer.feed(stream[:split]), *framer.feed(stream[split:])] == expected


def test_an_overlong_line_is_cut_once_and_becomes_a_dead_letter_that_says_so() -> None:
    framer = LineFramer()
    assert list(framer.feed(b"x" * 5000)) == [b"x" * (MAX_LINE + 1)]  # cut, once ...
    assert list(framer.feed(b"x" * 5000)) == []
    assert list(framer.feed(b"tail\nu,t,1\n")) == [b"u,t,1"]  # ... and the rest dropped up to its end
    assert list(framer.feed(b"y" * 3000 + b"\n")) == [b"y" * (MAX_LINE + 1)]  # one chunk, one cut line
    assert list(framer.feed(b"#" * 3000)) == []  # a comment, however long, is no dead letter
    assert list(framer.feed(b"\nu,t," + b"1" * (MAX_LINE - 4) + b"\r")) == []  # exactly the bound, CR ...
    assert list(framer.feed(b"\n")) == [b"u,t," + b"1" * (MAX_LINE - 4)]  # ... then LF: the line, whole
    assert len(decode(b"u,t,1" + b" " * (MAX_LINE - 5), received_at=AT, device_id="d")) == 1  # up to the bound
    with pytest.raises(FrameError, match=f"longer than {MAX_LINE} bytes"):
        decode(b"x" * (MAX_LINE + 1), received_at=AT, device_id="d")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_ingest_errors(line: bytes) -> None:
    try:
        decode(line, received_at=AT, device_id="d")
    except IngestError:
        pass
