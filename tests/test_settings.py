"""Settings from the environment and the meters file; secrets stay masked."""

import re
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.brokers import KafkaSettings, MqttSettings
from pipeline.logic.plausible import Limits
from pipeline.meters_file import MetersFile
from pipeline.settings import Settings
from pipeline.sites import Charger, Site
from tests.mqtt import certificates


def test_environment_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTSTREAM_INFLUX_URL", "http://influx:8086")
    monkeypatch.setenv("WATTSTREAM_INFLUX_TOKEN", "s3cr3t-token")
    monkeypatch.setenv("WATTSTREAM_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("WATTSTREAM_WORKER_BATCH_SIZE", "250")
    monkeypatch.setenv("WATTSTREAM_MQTT_PASSWORD", "mqtt-pass")
    settings = Settings(_env_file=None)
    assert settings.influx.url == "http://influx:8086"
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.worker.batch_size == 250
    assert settings.influx.token is not None and settings.influx.token.get_secret_value() == "s3cr3t-token"
    shown = f"{settings!r} {settings}"
    assert "s3cr3t-token" not in shown and "mqtt-pass" not in shown


def test_defaults_write_files_when_no_influx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATTSTREAM_INFLUX_URL", raising=False)
    assert Settings(_env_file=None).influx.url is None


def test_meters_file(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    path.write_text('[[meter]]\ndriver = "iammeter"\ndevice = "DA2BED94"\nrole = "grid"\n\n'
                    '[[meter]]\ndriver = "evn"\ndevice = "SAGY"\nkey = "00112233445566778899AABBCCDDEEFF"\n')
    grid, evn = MetersFile.load(path).meter
    assert grid.meter_id == "iammeter:DA2BED94" and grid.role == "grid" and grid.site == "home"
    assert evn.key is not None and "0011" not in repr(evn)


def test_meters_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    path.write_text('[[meter]]\ndriver = "iammeter"\nrole = "boss"\n')
    with pytest.raises(ValueError, match=r"meters\.toml"):
        MetersFile.load(path)


def test_sites_and_chargers(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    path.write_text('[[meter]]\ndriver = "iammeter"\ndevice = "G"\nrole = "grid"\nsite = "barn"\n\n'
                    '[[meter]]\ndriver = "iammeter"\ndevice = "P"\nrole = "pv"\nsite = "barn"\n\n'
                    '[[site]]\nname = "home"\nphases = "auto"\n\n'
                    '[[charger]]\nname = "123456"\nsite = "barn"\nformat = "goe"\n')
    meters_file = MetersFile.load(path)
    sites = meters_file.sites()
    assert sites["barn"].phases == 3 and sites["home"].phases == "auto"  # barn: defaults
    assert meters_file.feeds() == {"iammeter:G": ("barn", "grid"), "iammeter:P": ("barn", "pv")}
    assert meters_file.charger[0].mqtt_topic == "/go-eCharger/123456/ids/set"


def test_site_delays_must_let_an_overdraw_end_within_the_disable_delay(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    path.write_text('[[site]]\nname = "home"\nphase_down_delay_seconds = 300\n')
    with pytest.raises(ValueError, match="phase_down_delay_seconds"):
        MetersFile.load(path)


def test_configuration_page_lists_every_setting() -> None:
    """docs/configuration.md names every WATTSTREAM_* variable in full."""
    page = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    settings = Settings()
    wanted = []
    for section in type(settings).model_fields:
        fields = getattr(type(getattr(settings, section)), "model_fields", {})
        wanted += [f"WATTSTREAM_{section.upper()}_{name.upper()}" for name in fields] if fields \
            else [f"WATTSTREAM_{section.upper()}"]
    assert [name for name in wanted if f"`{name}`" not in page] == []


def test_meter_limits(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    path.write_text('[[meter]]\ndriver = "iammeter"\ndevice = "A"\n\n'
                    '[[meter]]\ndriver = "adw300"\ndevice = "B"\nmax_power_w = 120000\nmax_current_a = 250\n')
    assert [meter.limits() for meter in MetersFile.load(path).meter] == \
        [Limits(), Limits(max_power_w=120_000.0, max_current_a=250.0)]
    path.write_text('[[meter]]\ndriver = "iammeter"\ndevice = "A"\nmax_power_w = 0\n')
    with pytest.raises(ValueError, match="max_power_w"):
        MetersFile.load(path)


def test_kafka_over_tls_and_sasl_the_same_for_every_client_and_for_faust(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from pipeline.app import broker_credentials

    certs = certificates(tmp_path, "broker.example")
    for name, value in {"BOOTSTRAP": "broker.example:9093", "SECURITY_PROTOCOL": "SASL_SSL", "USERNAME": "site-7",
                        "PASSWORD": "kafka-secret", "CA_FILE": str(certs / "ca.crt")}.items():
        monkeypatch.setenv(f"WATTSTREAM_KAFKA_{name}", value)
    kafka = Settings(_env_file=None).kafka
    assert "kafka-secret" not in f"{kafka!r} {kafka}"
    connection = kafka.connection()
    faust = credentials_to_aiokafka_auth(broker_credentials(kafka))  # what Faust gives its own clients
    for options in (connection, faust):
        assert {k: options[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                        "sasl_plain_password")} == {
            "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "site-7",
            "sasl_plain_password": "kafka-secret"}
        context = options["ssl_context"]
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "wattstream MQTT CA"),),)]
    assert connection["bootstrap_servers"] == "broker.example:9093"
    assert credentials_to_aiokafka_auth(broker_credentials(KafkaSettings())) == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(("section", "values", "error"), [
    (KafkaSettings, {"security_protocol": "SASL_SSL", "username": "u"}, "needs a username and a password"),
    (KafkaSettings, {"ca_file": "ca.crt"}, "security_protocol is PLAINTEXT"),
    (KafkaSettings, {"security_protocol": "SSL", "cert_file": "client.crt"}, "both cert_file and key_file"),
    (MqttSettings, {"ca_file": "ca.crt"}, "WATTSTREAM_MQTT_TLS=true"),
])
def test_tls_and_sasl_settings_that_cannot_work_are_refused(section: type[KafkaSettings | MqttSettings],
                                                            values: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        section.model_validate(values)


def test_meter_keys_reach_the_drivers_but_no_repr(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    path.write_text('[[meter]]\ndriver = "dsmr"\ndevice = "534147677001bd54"\n'
                    'key = "D491470F47126332B07D1923B3504188"\n')
    meters_file = MetersFile.load(path)
    config = meters_file.driver_config()
    assert config.keys == {"534147677001BD54": bytes.fromhex("D491470F47126332B07D1923B3504188")}
    shown = f"{meters_file!r} {meters_file} {config!r} {config}"
    assert "D491470F" not in shown.upper() and repr(bytes.fromhex("D491470F"))[2:-1] not in shown
    path.write_text('[[meter]]\ndriver = "dsmr"\ndevice = "x"\nkey = "D491470F47126332"\n')
    with pytest.raises(ValueError, match="the key of dsmr:x must be 32 hex digits") as error:
        MetersFile.load(path).driver_config()
    assert "D491470F" not in str(error.value)


def test_a_meters_file_mistake_never_shows_a_key(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    path.write_text('[[meter]]\ndriver = "evm"\ndevice = "5341475905E990F3"\n'
                    'key = "00112233445566778899AABBCCDDEEFF"\n')
    with pytest.raises(ValueError, match="no driver 'evm'") as error:
        MetersFile.load(path)
    assert "00112233" not in str(error.value) and error.value.__cause__ is None and error.value.__suppress_context__


def test_the_charging_page_lists_every_site_and_charger_setting() -> None:
    page = (Path(__file__).parent.parent / "docs" / "charging.md").read_text()
    missing = [f"{model.__name__}.{name}" for model in (Site, Charger) for name in model.model_fields
               if name != "loadpoints" and not re.search(rf"^#? ?{name} = ", page, re.MULTILINE)
               and f"`{name}`" not in page]
    assert not missing
