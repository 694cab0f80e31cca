"""scripts/influxdb-tokens, which compose's one-shot `influxdb-tokens` runs with the admin token on every
start. No InfluxDB 2 runs here: the script runs against a stand-in `influx` that answers as the influx
CLI documents (`--json` output of `bucket list` and `auth create`; `v1 auth create` fails for a user that
exists, `v1 auth delete --username` for one that does not) and records every call; shellcheck reads it
and scripts/mqtt-certs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "scripts" / "influxdb-tokens"
BUCKET_IDS = {"wattstream": "0a1b2c3d4e5f6789", "renewed": "9f8e7d6c5b4a3210"}

INFLUX = f'''#!/usr/bin/env python3
import json, os, sys
from pathlib import Path
state = Path(os.environ["FAKE_INFLUX_STATE"])
args = sys.argv[1:]
with (state / "calls").open("a") as calls:
    calls.write(json.dumps(args) + "\\n")
if args[:2] == ["bucket", "list"]:
    name = args[args.index("--name") + 1]
    ids = {BUCKET_IDS!r}
    found = [{{"id": ids[name], "name": name, "orgID": "ffff000011112222"}}] if name in ids else []
    print(json.dumps(found, indent=2))
elif args[:2] == ["auth", "create"]:
    number = len(list(state.glob("token-*"))) + 1
    (state / f"token-{{number}}").touch()
    print(json.dumps({{"id": "0000000000000001", "description": "d", "token": f"write-token-{{number}}==",
                      "status": "active", "userID": "0000000000000002"}}, indent=2))
elif args[:3] == ["v1", "auth", "create"]:
    user = state / ("v1-" + args[args.index("--username") + 1])
    if user.exists():
        sys.exit("Error: failed to create v1 authorization: conflict")
    user.touch()
elif args[:3] == ["v1", "auth", "delete"]:
    user = state / ("v1-" + args[args.index("--username") + 1])
    if not user.exists():
        sys.exit("Error: v1 authorization not found")
    user.unlink()
else:
    sys.exit(f"unknown: {{args}}")
'''


def run(tmp_path: Path, password: str, bucket: str = "wattstream") -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "FAKE_INFLUX_STATE": str(tmp_path / "state"),
           "TOKENS_DIR": str(tmp_path / "tokens"), "WORKER_UID": str(os.getuid()), "INFLUXDB_BUCKET": bucket,
           "GRAFANA_INFLUX_PASSWORD": password, "INFLUX_HOST": "http://influxdb:8086", "INFLUX_TOKEN": "admin",
           "INFLUX_ORG": "wattstream"}
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True)


@pytest.fixture
def fake_influx(tmp_path: Path) -> Path:
    for name in ("bin", "state", "tokens"):
        (tmp_path / name).mkdir()
    influx = tmp_path / "bin" / "influx"
    influx.write_text(INFLUX)
    influx.chmod(0o755)
    return tmp_path


def calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "state" / "calls").read_text().splitlines()]


def test_first_start_makes_a_write_only_token_and_a_read_only_grafana_user(fake_influx: Path) -> None:
    done = run(fake_influx, "grafana-secret")
    assert done.returncode == 0, done.stderr
    token = fake_influx / "tokens" / "worker.token"
    assert token.read_text() == "write-token-1==\n"
    assert token.stat().st_mode & 0o777 == 0o600 and token.stat().st_uid == os.getuid()
    create, v1 = [c for c in calls(fake_influx) if c[1] == "create" or c[:3] == ["v1", "auth", "create"]]
    bucket = BUCKET_IDS["wattstream"]
    assert create[create.index("--write-bucket") + 1] == bucket
    assert not any(flag.startswith(("--read", "--all-access", "--operator")) for flag in create)
    assert v1[v1.index("--read-bucket") + 1] == bucket and v1[v1.index("--password") + 1] == "grafana-secret"
    assert not any(flag.startswith("--write") for flag in v1)
    assert "grafana-secret" not in done.stdout + done.stderr and "write-token" not in done.stdout + done.stderr


def test_a_restart_keeps_the_token_and_gives_grafana_the_password_from_env(fake_influx: Path) -> None:
    assert run(fake_influx, "first").returncode == 0
    done = run(fake_influx, "changed")
    assert done.returncode == 0, done.stderr
    assert (fake_influx / "tokens" / "worker.token").read_text() == "write-token-1==\n"  # no second token
    assert len([c for c in calls(fake_influx) if c[:2] == ["auth", "create"]]) == 1
    last = calls(fake_influx)[-1]
    assert last[:3] == ["v1", "auth", "create"] and last[last.index("--password") + 1] == "changed"
    assert (fake_influx / "state" / "v1-grafana").exists()


def test_a_new_bucket_gets_a_new_token_and_grafana_reads_the_new_one(fake_influx: Path) -> None:
    """A new InfluxDB volume (or bucket) beside the kept token volume: the old token would be refused."""
    assert run(fake_influx, "secret").returncode == 0
    done = run(fake_influx, "secret", bucket="renewed")
    assert done.returncode == 0, done.stderr
    assert (fake_influx / "tokens" / "worker.token").read_text() == "write-token-2==\n"
    creates = [c for c in calls(fake_influx) if c[:2] == ["auth", "create"] or c[:3] == ["v1", "auth", "create"]]
    assert [c[c.index("--write-bucket" if c[0] == "auth" else "--read-bucket") + 1] for c in creates[2:]] == \
        [BUCKET_IDS["renewed"]] * 2


def test_a_missing_bucket_stops_it_with_a_reason(fake_influx: Path) -> None:
    done = run(fake_influx, "x", bucket="other")
    assert done.returncode == 1 and "no bucket other" in done.stderr
    assert not (fake_influx / "tokens" / "worker.token").exists()


def test_shellcheck_finds_nothing_in_the_scripts_compose_runs() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: apt-get install shellcheck (the README's test command does)"
    done = subprocess.run([shellcheck, str(SCRIPT), str(ROOT / "scripts" / "mqtt-certs")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout
