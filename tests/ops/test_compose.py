"""compose/: no Docker engine here, so the file is validated against the
Compose Specification schema and every command and env var is checked against
the code that will run it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hivewire import natsauth

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose"
SCHEMA = COMPOSE / "schema" / "compose-spec.json"


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return doc


def console_scripts() -> dict[str, str]:
    out: dict[str, str] = {}
    for pp in [REPO / "libs/hivewire/pyproject.toml", *REPO.glob("services/*/pyproject.toml")]:
        out.update(tomllib.loads(pp.read_text()).get("project", {}).get("scripts", {}))
    return out


def env_vars_read_by_code() -> set[str]:
    """Every HIVE_* name that appears as a string literal in hivewire or a service."""
    names: set[str] = set()
    for f in [*REPO.glob("libs/hivewire/hivewire/**/*.py"), *REPO.glob("services/*/hive_*/**/*.py")]:
        names |= set(re.findall(r"[\"'](HIVE_[A-Z0-9_]+)[\"']", f.read_text()))
    return names


def test_compose_file_matches_the_compose_spec_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_can_fail() -> None:
    schema = json.loads(SCHEMA.read_text())
    bad = compose()
    bad["services"]["broker"]["healthcheck"]["intervall"] = "5s"
    bad["services"]["broker"]["depends_on"] = {"nats": {"condition": "when_ready"}}
    assert len(list(jsonschema.Draft201909Validator(schema).iter_errors(bad))) >= 2


def test_every_service_runs_a_real_command_with_known_env() -> None:
    doc = compose()
    services = doc["services"]
    scripts = console_scripts()
    known_env = env_vars_read_by_code()
    # Every Hive service has a container, started by its console script.
    for short in ("broker", "deployer", "dashboard", "backup"):
        assert services[short]["command"] == [f"hive-{short}"]
        assert scripts[f"hive-{short}"] == f"hive_{short}.__main__:main"
    assert "hive-harness" in scripts  # started by the deployer inside its container
    for name, svc in services.items():
        cmd = svc.get("command")
        if name == "prometheus":
            continue
        assert cmd, name
        exe = cmd[0]
        assert exe in scripts or exe == "nats-server", f"{name}: {exe} is no console script"
        if exe == "hive":
            r = subprocess.run(["hive", *cmd[1:], "--help"], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (name, r.stderr)
        env = svc.get("environment", {})
        for key in env:
            assert key in known_env, f"{name}: {key} is read by no code"
        if exe.startswith("hive-"):
            assert env["HIVE_HOME"] == "/var/lib/hive"
            assert env["HIVE_NATS_URL"] == "nats://nats:4222"
            short = exe.removeprefix("hive-")
            user = natsauth.service_user(short)
            assert env["HIVE_NATS_CREDS"] == f"/var/lib/hive/nats/creds/{user}.env"
            assert "/var/lib/hive" in [v.split(":")[1] for v in svc["volumes"]]
            assert "healthcheck" in svc, name
    # The metrics ports are the defaults the Prometheus config expects.
    from hivewire.settings import DEFAULT_METRICS_PORTS

    for short in ("broker", "deployer", "backup"):
        assert services[short]["environment"]["HIVE_METRICS_ADDR"] == f"0.0.0.0:{DEFAULT_METRICS_PORTS[short]}"
    # agents are never run unconfined next to the whole volume: bwrap, with what it needs from the engine
    deployer = services["deployer"]
    assert deployer["environment"]["HIVE_DEPLOYER_RUNTIME"] == "bwrap"
    assert "HIVE_ALLOW_UNCONFINED" not in deployer["environment"]
    assert {"seccomp=unconfined", "systempaths=unconfined"} <= set(deployer["security_opt"])
    assert "bubblewrap" in (COMPOSE / "Dockerfile").read_text()


def test_nats_command_and_config_paths_agree_with_natsauth(tmp_path: Path) -> None:
    nats = compose()["services"]["nats"]
    cmd = nats["command"]
    cfg = cmd[cmd.index("-c") + 1]
    home = Path("/var/lib/hive")
    assert cfg == str(natsauth.config_path(home))
    # The same flags against a real nats-server with a generated config (HIVE_HOME in tmp).
    natsauth.generate(tmp_path)
    real = [a.replace("/var/lib/hive", str(tmp_path)) for a in cmd]
    assert real[0] == "nats-server" and shutil.which("nats-server")
    r = subprocess.run([*real, "-t"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    init = compose()["services"]["nats-config"]["command"]
    assert init[:2] == ["hive", "nats-config"]
    assert nats["depends_on"]["nats-config"]["condition"] == "service_completed_successfully"


def test_healthchecks_probe_the_ports_the_services_listen_on() -> None:
    services = compose()["services"]
    for short, svc in services.items():
        hc = svc.get("healthcheck")
        if not hc or short == "prometheus":
            continue
        probe = " ".join(hc["test"])
        port = re.search(r"127\.0\.0\.1:(\d+)/", probe)
        assert port, short
        listen = svc.get("environment", {}).get("HIVE_METRICS_ADDR") or svc.get("environment", {}).get(
            "HIVE_DASHBOARD_ADDR") or "0.0.0.0:8222"
        assert listen.endswith(f":{port.group(1)}"), (short, listen, probe)


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed")
def test_compose_prometheus_config(tmp_path: Path) -> None:
    text = (COMPOSE / "prometheus.yml").read_text().replace("/etc/prometheus/rules", str(REPO / "prometheus/rules"))
    (tmp_path / "p.yml").write_text(text)
    r = subprocess.run(["promtool", "check", "config", str(tmp_path / "p.yml")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    targets = {t for j in yaml.safe_load(text)["scrape_configs"] for c in j.get("static_configs", [])
               for t in c["targets"]}
    assert targets == {"broker:9411", "deployer:9412", "backup:9413", "dashboard:8000"}


def test_dockerfile_installs_every_package() -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    for d in ["libs/hivewire", *(f"services/{p.parent.name}" for p in REPO.glob("services/*/pyproject.toml"))]:
        assert f"./{d}" in text, d
    assert "VOLUME [\"/var/lib/hive\"]" in text and "HIVE_HOME=/var/lib/hive" in text
