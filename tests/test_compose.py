"""compose.yaml checked statically (no Docker engine here): services, images, build context, ports,
healthchecks and start order, mounted paths, profiles, and every ${VAR} defined in .env.example without
a real secret."""

import re
from pathlib import Path

import yaml

from simulators.meters import demo_meters_toml

ROOT = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
OURS = ("worker", "bridge", "publish", "charger", "simulate", "serial")


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_services_images_and_the_project_image() -> None:
    images = {name: service.get("image", "") for name, service in SERVICES.items()}
    assert images["kafka"].startswith("apache/kafka:")
    assert images["mosquitto"].startswith("eclipse-mosquitto:")
    assert images["influxdb"].startswith("influxdb:2")
    assert images["grafana"].startswith("grafana/grafana:")
    for image in filter(None, images.values()):
        assert re.search(r":\d", image), f"{image} is not pinned to a version"
    for name in OURS:
        assert SERVICES[name]["build"] == ".", name
    commands = {name: SERVICES[name]["command"] for name in OURS}
    assert commands["worker"] == "worker" and commands["bridge"] == ["bridge", "mqtt"]
    assert commands["publish"] == "publish" and commands["charger"] == "charger"
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")  # runs as non-root
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.M))  # the image has every package
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "tests" in ignored  # a small build context
    assert {".env", "meters.toml", "mosquitto"} <= set(ignored)  # secrets and keys stay out of the image


def test_ports_for_meters_grafana_influxdb_and_remote_bridges() -> None:
    env = env_example()
    published: dict[str, str] = {}  # host port → the address it listens on
    for service in SERVICES.values():
        for port in service.get("ports", []):
            *bind, host, _container = re.sub(r"\$\{(\w+)(?::-[^}]*)?\}", lambda m: env[m.group(1)], port).split(":")
            published[host] = bind[0] if bind else "0.0.0.0"
    # meters reach MQTT and people Grafana from the LAN; InfluxDB and plaintext Kafka only by opting in
    assert published == {"1883": "0.0.0.0", "8883": "0.0.0.0", "3000": "0.0.0.0", "8086": "127.0.0.1",
                         "9094": "127.0.0.1"}
    assert "EXTERNAL://${KAFKA_EXTERNAL_HOST}:9094" in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_healthchecks_and_start_order_by_health() -> None:
    healthy = {name for name, service in SERVICES.items() if service.get("healthcheck", {}).get("test")}
    assert {"kafka", "mosquitto", "influxdb", "grafana", "worker"} <= healthy
    for name, service in SERVICES.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for dependency, condition in depends.items():
            if dependency in ("mqtt-users", "influxdb-tokens"):  # one-shot jobs: done, not healthy
                assert condition == {"condition": "service_completed_successfully"}, name
                continue
            assert condition == {"condition": "service_healthy"} and dependency in healthy, (name, dependency)
    assert set(SERVICES["worker"]["depends_on"]) == {"kafka", "influxdb-tokens"}
    assert set(SERVICES["influxdb-tokens"]["depends_on"]) == {"influxdb"}
    assert set(SERVICES["bridge"]["depends_on"]) == {"kafka", "mosquitto"}
    assert "9108" in SERVICES["worker"]["healthcheck"]["test"][-1]  # /metrics (docs/operations.md, "Pipeline health")
    assert set(SERVICES["mosquitto"]["depends_on"]) == {"mqtt-users"}  # the password file first


def test_mqtt_needs_accounts_and_every_client_of_the_stack_has_one() -> None:
    conf = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.M) and not re.search(r"^allow_anonymous true", conf, re.M)
    assert re.search(r"^password_file /mosquitto/auth/passwd$", conf, re.M)
    assert re.search(r"^acl_file /mosquitto/config/acl$", conf, re.M)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["mosquitto"]["volumes"]}
    assert mounts["/mosquitto/auth"] in SERVICES["mqtt-users"]["volumes"][0]  # what mqtt-users writes
    test = SERVICES["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and '-u wattstream -P "$$MQTT_PASSWORD"' in test[1]  # works with auth on
    assert SERVICES["mosquitto"]["environment"]["MQTT_PASSWORD"] == "${MQTT_PASSWORD}"
    acl_users = set(re.findall(r"^user (\S+)$", (ROOT / "mosquitto" / "acl").read_text(), re.M))
    script = SERVICES["mqtt-users"]["command"][2]
    assert acl_users == set(re.findall(r'"\$\$f" (\w+) "', script)) == {"wattstream", "meter", "reader", "control"}
    for name in OURS:  # the bridges, publish, charger, the simulator: the stack's account
        env = SERVICES[name]["environment"]
        assert env["WATTSTREAM_MQTT_USERNAME"] == "wattstream" and env["WATTSTREAM_MQTT_PASSWORD"], name


def test_profiles_demo_charger_and_serial() -> None:
    profiles = {name: service.get("profiles") for name, service in SERVICES.items() if service.get("profiles")}
    # the charger bridge exits without a [[charger]]: the shipped meters.toml has none, the demo's has
    assert profiles == {"simulate": ["demo"], "serial": ["serial"], "charger": ["charger", "demo"], "p1": ["p1"]}
    assert SERVICES["p1"]["command"][:3] == ["bridge", "p1", "--port"] and \
        env_example()["P1_ADDRESS"].startswith("tcp://")
    assert "[[charger]]" not in (ROOT / "meters.toml").read_text().replace("# [[charger]]", "")
    assert "[[charger]]" in (ROOT / "meters.demo.toml").read_text()
    assert SERVICES["serial"]["devices"] == ["${SERIAL_DEVICE}:/dev/wattstream-serial"]
    assert SERVICES["serial"]["group_add"] == ["${SERIAL_GID}"] and env_example()["SERIAL_GID"].isdigit()
    assert SERVICES["serial"]["command"][:4] == ["bridge", "broute", "--port", "/dev/wattstream-serial"]
    demo = (ROOT / "meters.demo.toml").read_text()
    assert demo.endswith(demo_meters_toml())  # the demo's meters file is what the simulators need


def test_every_service_that_reads_the_meters_file_has_it() -> None:
    """The worker, `bridge mqtt`, `publish` and `charger` read WATTSTREAM_METERS_FILE at start (and end
    with exit status 2 when it is not there): each of them mounts it where the setting says."""
    readers = {"worker", "bridge mqtt", "publish", "charger"}
    found = set()
    for name, service in SERVICES.items():
        command = service.get("command")
        words = " ".join(command[:2]) if isinstance(command, list) else command
        if service.get("build") == "." and words in readers:
            found.add(words)
            path = service["environment"]["WATTSTREAM_METERS_FILE"]
            assert f"./meters.toml:{path}:ro" in service.get("volumes", []), name
    assert found == readers  # each of them is a service of the stack


def test_mounted_paths_exist_and_volumes_are_declared() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in COMPOSE["volumes"], (name, source)
    assert "./mosquitto:/mosquitto/config:ro" in SERVICES["mosquitto"]["volumes"]
    conf = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(r"^listener 1883$", conf, re.M)
    assert "password_file" in conf and "include_dir /mosquitto/config/conf.d" in conf  # conf.d: TLS and more
    assert (ROOT / "mosquitto" / "conf.d").is_dir()  # mosquitto refuses to start without it
    assert "listener 8883" in (ROOT / "mosquitto" / "tls.conf.example").read_text()
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/wattstream.yaml").read_text())["providers"][0]
    mounted = dict(v.split(":")[1::-1] for v in SERVICES["grafana"]["volumes"] if v.startswith("./"))
    assert provider["options"]["path"] in mounted and (ROOT / mounted[provider["options"]["path"]]).is_dir()


def test_every_variable_is_in_env_example_and_no_secret_is_real() -> None:
    text = (ROOT / "compose.yaml").read_text() + "".join(
        p.read_text() for p in (ROOT / "grafana" / "provisioning").rglob("*.yaml"))
    used = set(re.findall(r"\$\{(\w+)(?::?[-?][^}]*)?\}", text))
    defined = env_example()
    provided_by_compose = {"WATTSTREAM_INFLUX_URL"}  # set on the grafana service itself
    assert used - provided_by_compose == set(defined), (used - set(defined), set(defined) - used)
    for key, value in defined.items():
        if any(word in key for word in ("PASSWORD", "TOKEN")):
            assert "change-me" in value, key


def test_grafana_reads_and_the_worker_writes_with_accounts_of_their_own_not_the_admin_token() -> None:
    datasource = yaml.safe_load((ROOT / "grafana/provisioning/datasources/influxdb.yaml").read_text())["datasources"][0]
    assert datasource["type"] == "influxdb" and "version" not in datasource["jsonData"]  # InfluxQL
    assert datasource["user"] == "grafana"
    assert datasource["secureJsonData"] == {"password": "${GRAFANA_INFLUX_PASSWORD}"}
    admin_token = {name for name, service in SERVICES.items()
                   if "${INFLUXDB_TOKEN}" in yaml.safe_dump(service.get("environment", {}))}
    assert admin_token == {"influxdb", "influxdb-tokens"}
    worker = SERVICES["worker"]
    token_file = Path(worker["environment"]["WATTSTREAM_INFLUX_TOKEN_FILE"])
    assert f"influxdb-tokens:{token_file.parent}:ro" in worker["volumes"]
    assert "influxdb-tokens:/tokens" in SERVICES["influxdb-tokens"]["volumes"]
    assert "./scripts/influxdb-tokens:/influxdb-tokens:ro" in SERVICES["influxdb-tokens"]["volumes"]
    assert "WATTSTREAM_INFLUX_TOKEN" not in worker["environment"]
    uid = re.search(r"useradd .*--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert uid and SERVICES["influxdb-tokens"]["environment"]["WORKER_UID"] == uid.group(1)  # the token's reader


def test_the_data_is_on_volumes_and_survives_a_new_container() -> None:
    kafka = SERVICES["kafka"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in kafka["volumes"]}
    # with any KAFKA_* set, the image writes the log dir from the variables (default: /tmp in the container)
    assert mounts.get(kafka["environment"]["KAFKA_LOG_DIRS"]) in COMPOSE["volumes"]
    assert kafka["environment"]["CLUSTER_ID"].startswith("${KAFKA_CLUSTER_ID:?")  # required: formats and reopens it
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env_example()["KAFKA_CLUSTER_ID"])
    influx = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["influxdb"]["volumes"]}
    assert influx.keys() >= {"/var/lib/influxdb2", "/etc/influxdb2"} and set(influx.values()) <= set(COMPOSE["volumes"])
    assert "grafana-data:/var/lib/grafana" in SERVICES["grafana"]["volumes"]
    assert "mosquitto-data:/mosquitto/data" in SERVICES["mosquitto"]["volumes"]
    conf = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(r"^persistence true$", conf, re.M)
    assert re.search(r"^persistence_location /mosquitto/data/$", conf, re.M)


def test_an_env_from_before_neither_opens_ports_nor_makes_empty_passwords() -> None:
    """A variable .env lacks is an empty string to compose: the binds fall back to this host, and the
    passwords and the cluster id are required (`:?`), so an old .env fails loudly instead."""
    text = (ROOT / "compose.yaml").read_text()
    for name in ("KAFKA_EXTERNAL_BIND", "INFLUXDB_BIND"):
        assert f"${{{name}:-127.0.0.1}}" in text, name
    for name in ("KAFKA_CLUSTER_ID", "MQTT_PASSWORD", "METER_MQTT_PASSWORD", "READER_MQTT_PASSWORD",
                 "CONTROL_MQTT_PASSWORD"):
        assert re.search(rf"\$\{{{name}:\?[^}}]+\}}", text), name
