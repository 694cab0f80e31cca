"""The envelope format of raw records (`pipeline.envelope`): what goes in comes out, byte for byte, and
anything else is an `EnvelopeError` (a dead letter), never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import envelope, topics
from pipeline.envelope import EnvelopeError, Item
from pipeline.errors import IngestError

items = st.lists(st.builds(
    Item, st.binary(max_size=20), st.binary(max_size=200),
    st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=30)), max_size=4).map(tuple)), max_size=20)


@given(items)
def test_payloads_come_out_as_they_went_in(packed: list[Item]) -> None:
    data = envelope.pack(packed)
    assert envelope.unpack(data) == packed
    # what the bridge counts against its bound
    assert len(data) == envelope.HEAD + sum(envelope.size(item) for item in packed)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_envelope_errors(data: bytes) -> None:
    try:
        envelope.unpack(data)
    except EnvelopeError as exc:
        assert exc.stage == "frame" and exc.reason == "envelope" and isinstance(exc, IngestError)


def test_a_cut_envelope_and_trailing_bytes_are_refused() -> None:
    whole = envelope.pack([Item(b"k", b"payload", (("driver", b"iammeter"),))])
    with pytest.raises(EnvelopeError, match="runs past the end"):
        envelope.unpack(whole[:-1])
    with pytest.raises(EnvelopeError, match="1 bytes too many"):
        envelope.unpack(whole + b"x")


def test_a_plain_record_is_its_own_payload_and_an_unknown_version_is_refused() -> None:
    headers = {topics.H_DRIVER: b"iammeter"}
    assert envelope.items(b"dev", b"{}", headers) == [Item(b"dev", b"{}", ((topics.H_DRIVER, b"iammeter"),))]
    assert envelope.items(None, None, {}) == [Item(b"", b"", ())]
    packed = envelope.pack([Item(b"a", b"1", ()), Item(b"b", b"2", ())])
    assert [i.value for i in envelope.items(None, packed, {topics.H_ENVELOPE: b"1"})] == [b"1", b"2"]
    with pytest.raises(EnvelopeError, match="version b'2' is not understood"):
        envelope.items(None, packed, {topics.H_ENVELOPE: b"2"})
