"""DSMR P1 telegrams (tests/frames/dsmr/), field by field; the telegram framer at every split offset,
with garbage around; what is not a good telegram."""

from datetime import UTC, datetime

import pytest
from Crypto.Cipher import AES
from hypothesis import given
from hypothesis import strategies as st

from pipeline.drivers.dsmr import TelegramFramer, decode
from pipeline.errors import ChecksumError, DecryptError, FrameError, IngestError
from pipeline.models import Values
from tests.frames import FRAMES

AT = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def telegram(name: str) -> bytes:
    return (FRAMES / "dsmr" / f"{name}.txt").read_bytes()


def test_dsmr5_every_field() -> None:
    meter, gas = decode(telegram("v5"), received_at=AT, device_id="p1")
    assert meter.meter_id == "dsmr:K8EG004046395507"  # 0-0:96.1.1, hex of ASCII
    assert meter.ts == datetime(2017, 1, 2, 18, 20, 2, tzinfo=UTC)  # 170102192002W: winter time, CET
    assert meter.total == Values(power_w=244.0, energy_import_wh=4426 + 2399, energy_export_wh=2444)
    assert meter.phases == {"L1": Values(voltage_v=230.0, current_a=0.48, power_w=70.0),
                            "L2": Values(voltage_v=230.0, current_a=0.44, power_w=32.0),
                            "L3": Values(voltage_v=229.0, current_a=0.86, power_w=142.0)}
    assert meter.extra == {"energy_import_t1_wh": 4426.0, "energy_import_t2_wh": 2399.0,
                           "energy_export_t1_wh": 2444.0, "energy_export_t2_wh": 0.0, "tariff": 2.0}
    assert gas.meter_id == "dsmr:K8EG004046395507-gas"  # M-Bus channel 1, device type 3
    assert gas.ts == datetime(2017, 1, 2, 15, 10, 5, tzinfo=UTC) and gas.received_at == AT
    assert gas.extra == {"volume_m3": 0.107} and gas.total == Values()  # channel 2 sent no value: no reading


def test_dsmr42_per_phase_power_and_hourly_gas() -> None:
    meter, gas = decode(telegram("v4_2"), received_at=AT)
    assert meter.meter_id == "dsmr:3960221976967177082151037881335713"  # not ASCII: kept as sent
    assert meter.ts == datetime(2016, 11, 13, 19, 57, 57, tzinfo=UTC)
    assert meter.total == Values(power_w=2027.0, energy_import_wh=1581123 + 1435706, energy_export_wh=0)
    assert meter.phases == {"L1": Values(current_a=0.0, power_w=170.0), "L2": Values(current_a=6.0, power_w=1247.0),
                            "L3": Values(current_a=2.0, power_w=209.0)}
    assert (gas.meter_id, gas.ts, gas.extra) == (f"{meter.meter_id}-gas", datetime(2016, 11, 29, 19, tzinfo=UTC),
                                                 {"volume_m3": 981.443})


@pytest.mark.parametrize(("name", "meter", "kwh", "watts", "gas_ts"), [
    ("v2_2", "dsmr:00000000000000", "1.001", 1010.0, datetime(2016, 11, 7, 18, tzinfo=UTC)),
    ("v3", "dsmr:K8EG004046395507", "12345.678", 1190.0, datetime(2009, 2, 12, 15, tzinfo=UTC)),
])
def test_dsmr_2_and_3_without_crc_or_clock(name: str, meter: str, kwh: str, watts: float, gas_ts: datetime) -> None:
    electricity, gas = decode(telegram(name), received_at=AT)
    wh = int(kwh.replace(".", ""))
    assert electricity.meter_id == meter and electricity.ts == AT  # no 0-0:1.0.0: the receive time
    assert electricity.total == Values(power_w=watts, energy_import_wh=2 * wh, energy_export_wh=2 * wh)
    assert (gas.meter_id, gas.ts, gas.extra) == (f"{meter}-gas", gas_ts, {"volume_m3": 1.001})


def test_framer_at_every_split_offset_with_garbage_around() -> None:
    stream = b"\x00\xff!12\r\n/half a telegram" + telegram("v5") + b"noise" + telegram("v4_2") + b"/ISk5 cut"
    for offset in range(len(stream)):
        framer = TelegramFramer()
        found = [*framer.feed(stream[:offset]), *framer.feed(stream[offset:])]
        assert found == [telegram("v5"), telegram("v4_2")], offset


def test_framer_keeps_its_buffer_bounded() -> None:
    framer = TelegramFramer()
    assert list(framer.feed(b"x" * 100_000 + b"/" + b"y" * 100)) == []
    assert list(framer.feed(telegram("v5"))) == [telegram("v5")]


@pytest.mark.parametrize(("payload", "error", "message"), [
    (telegram("v5").replace(b"(00.244*kW)", b"(00.245*kW)"), ChecksumError, "CRC16 does not match"),
    (telegram("v5")[:200], FrameError, "a telegram runs from '/' to '!'"),
    (b"1-0:1.8.1(000004.426*kWh)\r\n!6EEE\r\n", FrameError, "a telegram runs from '/' to '!'"),
    (b"/ISk5\xff\r\n!\r\n", FrameError, "ASCII"),
    (b"/ISk5\\2MT382-1000\r\n\r\n!\r\n", FrameError, "without an equipment id"),
    (b"DB08" + b"00" * 40, FrameError, "general-glo-ciphering length 0 but 31 bytes follow"),
])
def test_what_is_not_a_good_telegram(payload: bytes, error: type[IngestError], message: str) -> None:
    with pytest.raises(error, match=message):
        decode(payload, received_at=AT)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_ingest_errors(payload: bytes) -> None:
    try:
        decode(payload, received_at=AT, keys={"*": bytes(16)})
    except IngestError:
        pass


@given(st.text(alphabet="/!0123456789ABCDEF()*.:-kWhV\r\n", max_size=300))
def test_arbitrary_telegram_text_only_ingest_errors(text: str) -> None:
    try:
        decode(("/" + text).encode(), received_at=AT, device_id="p1")
    except IngestError:
        pass


def test_fluvius_emucs_demand_peak_gas_and_water() -> None:
    meter, gas, water = decode(telegram("fluvius"), received_at=AT)
    assert meter.meter_id == "dsmr:1SAG3101021605"
    assert meter.ts == datetime(2020, 5, 12, 11, 54, 9, tzinfo=UTC)  # 200512135409S: summer time, CEST
    assert meter.total == Values(power_w=0.0, energy_import_wh=34 + 15758, energy_export_wh=11)
    assert meter.extra == {"energy_import_t1_wh": 34.0, "energy_import_t2_wh": 15758.0, "energy_export_t1_wh": 0.0,
                           "energy_export_t2_wh": 11.0, "average_demand_w": 2351.0, "peak_demand_month_w": 2589.0,
                           "tariff": 1.0}
    assert meter.phases == {p: Values(voltage_v=234.7, current_a=0.0, power_w=0.0) for p in ("L1", "L2", "L3")}
    assert (gas.meter_id, gas.extra) == ("dsmr:1SAG3101021605-gas", {"volume_m3": 112.384})
    assert (water.meter_id, water.extra) == ("dsmr:1SAG3101021605-water", {"volume_m3": 872.234})


def test_real_dsmr5_telegrams_of_another_project() -> None:
    [am550] = decode(telegram("iskra_am550"), received_at=AT)  # values as dsmr-tools asserts them
    assert am550.meter_id == "dsmr:E0044007131650618" and am550.ts == datetime(2019, 3, 24, 14, 5, 41, tzinfo=UTC)
    assert am550.total == Values(power_w=433.0, energy_import_wh=3432829 + 3224632, energy_export_wh=0)
    assert [am550.phases[p] for p in ("L1", "L2", "L3")] == [
        Values(voltage_v=236.7, current_a=0.0, power_w=45.0), Values(voltage_v=234.5, current_a=0.0, power_w=10.0),
        Values(voltage_v=236.0, current_a=2.0, power_w=379.0)]
    xs210, gas = decode(telegram("sagemcom_xs210"), received_at=AT)
    assert xs210.phases == {"L1": Values(voltage_v=229.0, current_a=1.0, power_w=335.0)}
    assert xs210.total == Values(power_w=335.0, energy_import_wh=51775, energy_export_wh=24413)
    assert (gas.meter_id, gas.ts, gas.extra) == ("dsmr:E0047000007630817-gas",
                                                 datetime(2017, 11, 5, 19, 10, tzinfo=UTC), {"volume_m3": 16.713})


SMARTY = (FRAMES / "dsmr" / "smarty.hex").read_bytes().strip()
SMARTY_KEY = bytes.fromhex("D491470F47126332B07D1923B3504188")


@pytest.mark.parametrize("payload", [SMARTY, bytes.fromhex(SMARTY.decode())], ids=["hex", "binary"])
def test_luxembourg_smarty_encrypted(payload: bytes) -> None:
    [meter] = decode(payload, received_at=AT, keys={"534147677001BD54": SMARTY_KEY})  # by its system title
    assert meter.meter_id == "dsmr:SAG1030700114004"  # 0-0:42.0.0
    assert meter.ts == datetime(2018, 1, 30, 9, 21, 22, tzinfo=UTC)
    assert meter.total == Values(power_w=0.0, energy_import_wh=6695, energy_export_wh=25)  # 1.8.0 / 2.8.0 in total


def test_smarty_without_its_key_with_a_wrong_one_or_a_flipped_byte() -> None:
    with pytest.raises(DecryptError, match="no key for the encrypted meter with system title 534147677001BD54"):
        decode(SMARTY, received_at=AT, keys={"534147677001BD55": SMARTY_KEY})
    with pytest.raises(DecryptError, match="534147677001BD54 does not decrypt with its key"):
        decode(SMARTY, received_at=AT, keys={"*": bytes(16)})
    flipped = bytearray(bytes.fromhex(SMARTY.decode()))
    flipped[100] ^= 0x01  # inside the ciphertext: the tag is not checked, the telegram's CRC16 is
    with pytest.raises(ChecksumError, match="CRC16 does not match"):
        decode(bytes(flipped), received_at=AT, keys={"*": SMARTY_KEY})


def test_encrypted_p1_with_an_authentication_key_of_its_own() -> None:
    """Another meter's frame: the same plaintext under another authentication key still decodes."""
    title, plain = bytes.fromhex("4B464D0000000001"), telegram("v5")
    cipher = AES.new(SMARTY_KEY, AES.MODE_GCM, nonce=title + bytes([0, 0, 0, 7]), mac_len=12)
    cipher.update(bytes([0x30]) + bytes(range(16)))
    body, tag = cipher.encrypt_and_digest(plain)
    rest = bytes([0x30, 0, 0, 0, 7]) + body + tag
    frame = bytes([0xDB, 8]) + title + bytes([0x82]) + len(rest).to_bytes(2, "big") + rest
    meter, _gas = decode(frame.hex().encode(), received_at=AT, keys={"4B464D0000000001": SMARTY_KEY})
    assert meter.meter_id == "dsmr:K8EG004046395507" and meter.total.power_w == 244.0


def encrypted(counter: int) -> bytes:
    """The Smarty plaintext encrypted again as the meter would, with another frame counter."""
    title, plain = bytes.fromhex("534147677001BD54"), telegram("smarty_decrypted")
    cipher = AES.new(SMARTY_KEY, AES.MODE_GCM, nonce=title + counter.to_bytes(4, "big"), mac_len=12)
    cipher.update(bytes([0x30]) + bytes.fromhex("00112233445566778899AABBCCDDEEFF"))  # security byte + public AK
    body, tag = cipher.encrypt_and_digest(plain)
    rest = bytes([0x30]) + counter.to_bytes(4, "big") + body + tag
    return bytes([0xDB, 8]) + title + bytes([0x82]) + len(rest).to_bytes(2, "big") + rest


def test_a_binary_frame_is_taken_as_it_is_even_ending_in_a_whitespace_byte() -> None:
    frame = next(f for f in map(encrypted, range(1, 10_000)) if f[-1:].isspace())
    [meter] = decode(frame, received_at=AT, keys={"*": SMARTY_KEY})
    assert meter.total.energy_import_wh == 6695


def test_framer_finds_encrypted_frames_in_a_stream() -> None:
    frame = bytes.fromhex(SMARTY.decode())
    frames = [encrypted(n) for n in range(1, 6)]
    stream = b"\r\n/ a stray slash \x00\xdb\x08 not a frame" + frame + telegram("v5") + b"".join(frames)
    for offset in range(0, len(stream), 7):
        framer = TelegramFramer()
        assert [*framer.feed(stream[:offset]), *framer.feed(stream[offset:])] == [frame, telegram("v5"), *frames]


def test_framer_is_not_held_up_by_a_0xdb_that_promises_a_huge_frame() -> None:
    stream = b"\xdb\x08" + bytes(8) + b"\x82\xff\xff" + telegram("v5") + telegram("v4_2")
    assert list(TelegramFramer().feed(stream)) == [telegram("v5"), telegram("v4_2")]
