"""EVN / Austrian P1: M-Bus framing, general-glo-ciphering, data-notification → Reading."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.drivers import dlms, evn, mbus
from pipeline.errors import ChecksumError, DecryptError, FrameError, IngestError
from pipeline.models import Values
from tests.frames import vectors

AT = datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC)
V = vectors("evn")
NOE, SAG, TINETZ = V["evn-netznoe-doc-kaifa-ma309"], V["evn-energyagent-sagemcom-sagy-68fafa"], \
    V["tinetz-kaifa-example-suite1"]


def keys(vector: dict[str, object]) -> dict[str, bytes]:
    return {evn.ANY_METER: bytes.fromhex(str(vector["key"]))}


def frames_of(vector: dict[str, object]) -> bytes:
    return bytes.fromhex(str(vector["input"]))


def decode_one(payload: bytes, vector: dict[str, object]) -> evn.Reading:
    [reading] = evn.decode(payload, received_at=AT, keys=keys(vector))
    return reading


def with_checksums_fixed(data: bytearray) -> bytes:
    """Recompute every frame's checksum (so a change inside a frame reaches the decryption)."""
    pos = 0
    while pos < len(data):
        length = data[pos + 1] if data[pos + 1] >= 5 else data[pos + 1] + 0x100
        data[pos + 4 + length] = sum(data[pos + 4: pos + 4 + length]) & 0xFF
        pos += 4 + length + 2
    return bytes(data)


def test_netz_noe_official_example_decrypts_to_the_stated_apdu() -> None:
    ciphered = dlms.parse_glo(mbus.reassemble(mbus.parse_frames(frames_of(NOE))))
    assert ciphered.system_title.hex().upper() == "4B464D6750000009" and ciphered.security_control == 0x20
    plain = dlms.decrypt(ciphered, bytes.fromhex(NOE["key"]))
    assert plain.hex().upper() == NOE["expected"]["stated_by_source"]["decrypted_apdu"]


def test_netz_noe_official_example_values() -> None:
    reading = decode_one(NOE["input"].encode(), NOE)
    assert reading.meter_id == "evn:4B464D6750000009"
    assert reading.ts == datetime(2021, 9, 27, 7, 47, 15, tzinfo=UTC)  # 09:47:15 +02:00
    assert reading.total == Values(energy_import_wh=12937, energy_export_wh=0, power_w=0.0, power_factor=1.0)
    assert reading.phases["L1"] == Values(voltage_v=233.7, current_a=0.0)
    assert reading.phases["L3"] == Values(voltage_v=0.0, current_a=0.0)


def test_sagemcom_values_as_asserted_by_its_source() -> None:
    raw = SAG["expected"]["stated_by_source"]
    reading = decode_one(SAG["input"].encode(), SAG)  # lower-case hex as the ESP8266 sends it
    assert reading.meter_id == "evn:5341475905E990F3"
    assert reading.total.energy_import_wh == raw["WirkenergieP"] == 6842204
    assert reading.total.energy_export_wh == raw["WirkenergieN"]
    assert reading.total.power_w == raw["MomentanleistungP"] - raw["MomentanleistungN"] == -2088
    assert [reading.phases[p].voltage_v for p in ("L1", "L2", "L3")] == [237.3, 237.8, 239.2]
    assert [reading.phases[p].current_a for p in ("L1", "L2", "L3")] == [3.2, 2.73, 2.92]
    assert reading.total.power_factor == raw["Leistungsfaktor"] / 1000
    assert reading.ts == datetime(2023, 6, 9, 6, 57, 55, tzinfo=UTC)  # 08:57:55 local, deviation -120


def test_tinetz_nested_layout_single_phase_fills_total() -> None:
    reading = decode_one(frames_of(TINETZ), TINETZ)  # binary frames are accepted too
    assert reading.meter_id == "evn:4B464D1010000023"
    assert reading.phases == {}
    assert reading.total == Values(voltage_v=230.8, current_a=0.0, power_w=0.0, energy_import_wh=9108,
                                   energy_export_wh=0, reactive_energy_import_varh=96, reactive_energy_export_varh=9)
    assert reading.ts == datetime(2021, 7, 19, 13, 46, 35, tzinfo=UTC)


def test_keys_by_system_title() -> None:
    key = bytes.fromhex(SAG["key"])
    [reading] = evn.decode(SAG["input"].encode(), received_at=AT, keys={"5341475905E990F3": key})
    assert reading.total.energy_import_wh == 6842204
    with pytest.raises(DecryptError, match="no key for EVN meter with system title 5341475905E990F3"):
        evn.decode(SAG["input"].encode(), received_at=AT, keys={"4B464D6750000009": key})


def test_wrong_key_is_a_decrypt_error_without_the_key() -> None:
    wrong = "00112233445566778899AABBCCDDEEFF"
    with pytest.raises(DecryptError) as info:
        evn.decode(NOE["input"].encode(), received_at=AT, keys={evn.ANY_METER: bytes.fromhex(wrong)})
    assert info.value.stage == "decrypt"
    assert wrong.lower() not in str(info.value).lower() and NOE["key"].lower() not in str(info.value).lower()


def test_a_flipped_byte_in_transit_fails_the_checksum() -> None:
    data = bytearray(frames_of(NOE))
    data[40] ^= 0x01
    with pytest.raises(ChecksumError):
        evn.decode(data.hex().encode(), received_at=AT, keys=keys(NOE))


def test_flipped_ciphertext_bytes_are_decrypt_errors_where_the_structure_shows_them() -> None:
    """GCM without a tag (EVN) cannot authenticate: a flip inside a value changes the value. Every flip
    of a structural byte (tags, lengths, OBIS codes, clock length) must be a DecryptError."""
    clean = frames_of(NOE)
    plain = bytes.fromhex(NOE["expected"]["stated_by_source"]["decrypted_apdu"])
    ct_start = 4 + 5 + 2 + 8 + 2 + 5  # frame header, link header, DB 08, title, 81 F8, SC + FC
    structural = [0, 5, 18, 19] + [i for i in range(len(plain)) if plain[i:i + 2] == b"\x09\x06"]
    for index in structural:
        data = bytearray(clean)
        data[ct_start + index] ^= 0xFF
        with pytest.raises(DecryptError):
            evn.decode(with_checksums_fixed(data), received_at=AT, keys=keys(NOE))


@pytest.mark.parametrize("cut", [1, 10, 100, 260, 268])
def test_truncated_telegrams_are_frame_errors(cut: int) -> None:
    with pytest.raises(FrameError):
        evn.decode(frames_of(NOE)[:-cut], received_at=AT, keys=keys(NOE))


def test_reordered_or_lonely_segments_are_frame_errors() -> None:
    first, second = mbus.parse_frames(frames_of(NOE))
    with pytest.raises(FrameError, match="segment 1 where 0"):
        mbus.reassemble([second, first])
    with pytest.raises(FrameError, match="last-segment flag missing"):
        mbus.reassemble([first])


def test_garbage_payloads() -> None:
    for payload, text in ((b"zzz", "neither hex"), (b"hello", "header broken"), (b"6", "whole hex bytes"),
                          (b"", "neither hex"), (b"AA68", "no M-Bus start byte")):
        with pytest.raises(FrameError, match=text):
            evn.decode(payload, received_at=AT, keys=keys(NOE))


def test_sagemcom_0x101_length_quirk_and_framing_vectors() -> None:
    frames = mbus.parse_frames(bytes.fromhex(V["evn-girsigit-readme-frame-no-key"]["input"]))
    assert [len(f.data) + 5 for f in frames] == [257, 13] and [f.ci for f in frames] == [0x00, 0x11]
    glo = dlms.parse_glo(mbus.reassemble(frames))
    assert glo.system_title.hex().upper() == "5341475905E6DBE2" and glo.frame_counter.hex() == "003986b8"
    assert len(glo.ciphertext) == 243
    for vector_id, ci, length in (("framing-gurux-forum-18232-kaifa-ma309m-frame1", 0x00, 0xFA),
                                  ("framing-gurux-forum-18232-kaifa-ma309m-frame2", 0x11, 0x72),
                                  ("framing-salzburgnetz-doc-single-frame", 0x10, 0x5D)):
        [frame] = mbus.parse_frames(bytes.fromhex(V[vector_id]["input"]))
        assert (frame.control, frame.address, frame.ci, len(frame.data) + 5) == (0x53, 0xFF, ci, length)
        assert frame.last == bool(ci & 0x10) and frame.segment == ci & 0x0F


def test_garbage_in_front_of_a_telegram_is_a_frame_error_and_leaves_nothing_pending() -> None:
    with pytest.raises(FrameError, match="no M-Bus start byte at offset 0"):
        evn.decode_stream(b"00FF" + SAG["input"].encode(), received_at=AT, pending=b"", keys=keys(SAG))


def test_gcm_with_authentication_tag_primitive() -> None:
    vector = V["dlms-gcm-authenticated-primitive"]
    k = vector["key"]
    ciphertext = bytes.fromhex(vector["expected"]["stated_by_source"]["ciphertext"])
    tag = bytes.fromhex(vector["expected"]["stated_by_source"]["authentication_tag"])[:12]
    ciphered = dlms.Ciphered(bytes.fromhex(k["system_title"]), 0x30, bytes.fromhex(k["frame_counter"]),
                             ciphertext, tag)
    assert dlms.decrypt(ciphered, bytes.fromhex(k["encryption_key"])).hex() == vector["input"]


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_ingest_errors(body: bytes) -> None:
    try:
        evn.decode(body, received_at=AT, keys=keys(NOE))
    except IngestError:
        pass


@given(st.integers(0, 243 * 8 - 1))
def test_any_single_bit_flip_in_the_ciphertext_raises_only_ingest_errors_or_decodes(bit: int) -> None:
    data = bytearray(frames_of(NOE))
    ct_start = 4 + 5 + 2 + 8 + 2 + 5
    position = ct_start + bit // 8
    if position >= 4 + 0xFA:  # skip the checksum/stop bytes and the second frame's header
        position += 2 + 4 + 5
    data[position] ^= 1 << (bit % 8)
    try:
        evn.decode(with_checksums_fixed(data), received_at=AT, keys=keys(NOE))
    except IngestError:
        pass


def test_telegrams_split_over_messages_at_every_offset() -> None:
    text = SAG["input"].upper()
    for cut in range(2, len(text) - 1, 2):  # whole hex bytes per message, as the ESP8266 sends them
        first, pending, _ = evn.decode_stream(text[:cut].encode(), received_at=AT, pending=b"", keys=keys(SAG))
        second, rest, notice = evn.decode_stream(text[cut:].encode(), received_at=AT, pending=pending,
                                                 keys=keys(SAG))
        assert first == [] and rest == b"" and notice is None, cut
        assert [r.total.energy_import_wh for r in second] == [6842204], cut


def test_two_telegrams_in_one_message_and_a_stale_fragment_dropped() -> None:
    both = bytes.fromhex(SAG["input"]) + bytes.fromhex(SAG["input"])
    readings, rest, _ = evn.decode_stream(both.hex().encode(), received_at=AT, pending=b"", keys=keys(SAG))
    assert len(readings) == 2 and rest == b""
    _, stale, _ = evn.decode_stream(SAG["input"][:100].encode(), received_at=AT, pending=b"", keys=keys(SAG))
    assert stale
    # a lost piece: the next message holds the second frame only; nothing decodes yet (still incomplete)
    readings, stale, notice = evn.decode_stream(frames_of(SAG)[256:].hex().encode(), received_at=AT,
                                                pending=stale, keys=keys(SAG))
    assert readings == [] and stale and notice is None
    # the next whole telegram no longer fits the stale bytes (checksum): they are dropped, it decodes
    readings, rest, notice = evn.decode_stream(SAG["input"].encode(), received_at=AT, pending=stale, keys=keys(SAG))
    assert [r.meter_id for r in readings] == ["evn:5341475905E990F3"] and rest == b""
    assert notice is not None and notice.startswith(f"an incomplete telegram of {len(stale)} bytes dropped")
