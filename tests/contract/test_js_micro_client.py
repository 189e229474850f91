"""A client no one here wrote: the official NATS JavaScript services client (@nats-io/services
over @nats-io/transport-node) pings, asks INFO and STATS of every service of a running
`hive up` (NATS auth on, as the operator), and what they report must be docs/asyncapi.yaml."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hivewire import natsauth
from hivewire.procs import die_with_parent, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_hive_up import wait_line, wait_services

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".tools" / "test" / "node_modules"
SCRIPT = Path(__file__).with_name("js_micro.mjs")
RUNNING = {"hive-broker", "hive-deployer", "hive-dashboard", "hive-backup", "hive-harness"}  # no agent host here


def documented(doc: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """service -> {(endpoint name, subject pattern)} of the AsyncAPI document's request operations."""
    out: dict[str, set[tuple[str, str]]] = {}
    for oid, op in doc["operations"].items():
        if op["x-hive-kind"] != "request":
            continue
        address = doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
        out.setdefault(op["x-hive-service"], set()).add((oid.split(".", 1)[1], address))
    return out


def served(pattern: str, subject: str) -> bool:
    """`subject` (what a service subscribed to) is `pattern` with each {param} a name or `*`."""
    pt, st = pattern.split("."), subject.split(".")
    return len(pt) == len(st) and all(p == s or (p.startswith("{") and s and "." not in s) for p, s in zip(pt, st,
                                                                                                         strict=True))


def js_micro(url: str, creds: dict[str, str], agent: str) -> dict[str, Any]:
    env = {**os.environ, "HIVE_NODE_MODULES": str(NODE_MODULES), "NATS_USER": creds["HIVE_NATS_USER"],
           "NATS_PASSWORD": creds["HIVE_NATS_PASSWORD"], "NATS_INBOX_PREFIX": creds["HIVE_NATS_INBOX_PREFIX"]}
    r = subprocess.run(["node", str(SCRIPT), url, agent], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    got: dict[str, Any] = json.loads(r.stdout)
    return got


def test_the_js_services_client_sees_the_documented_endpoints(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (NODE_MODULES / "@nats-io" / "services").is_dir():
        pytest.skip("@nats-io/services is not installed: run scripts/install --test")
    doc = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    want = documented(doc)
    home = tmp_path / "home"
    env = {**os.environ, "HIVE_HOME": str(home), "HIVE_METRICS_ADDR": "127.0.0.1:0",
           "HIVE_DASHBOARD_ADDR": f"127.0.0.1:{free_port()}"}
    env.pop("HIVE_NATS_URL", None)
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "hivewire.cli", "up", "--nats-port", "0"], env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    try:
        wait_services(home, 60)
        wait_line(tmp_path / "up.log", "Hive is ready")
        url = (home / "run" / "nats.url").read_text().strip()
        creds = natsauth.parse_env_file(natsauth.creds_path(home, natsauth.OPERATOR_USER).read_text())
        got = js_micro(url, creds, "manager")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
        log.close()

    pinged = {p["name"] for p in got["ping"]}
    assert RUNNING <= pinged, pinged  # the harness too: the deployer relays the broadcast to it
    assert all(p["type"] == "io.nats.micro.v1.ping_response" for p in got["ping"])
    assert [(p["name"], p["id"]) for p in got["harness"]["ping"]] == [("hive-harness", "manager")]

    infos = {i["name"]: i for i in got["info"] if i["name"] in RUNNING}
    assert set(infos) == RUNNING
    for name, info in infos.items():
        assert info["type"] == "io.nats.micro.v1.info_response"
        reported = {(e["name"], e["subject"]) for e in info["endpoints"]}
        documented_eps = want[name]
        # every endpoint reported is a documented operation of that service, and none is missing
        unknown = [e for e in reported if not any(n == e[0] and served(a, e[1]) for n, a in documented_eps)]
        missing = [d for d in documented_eps if not any(n == d[0] and served(d[1], s) for n, s in reported)]
        assert unknown == [] and missing == [], (name, unknown, missing)
    harness_eps = {e["subject"] for e in got["harness"]["info"][0]["endpoints"]}
    assert "hive.agent.manager.ctl.state" in harness_eps  # the harness serves its own agent only
    assert all(".manager." in s for s in harness_eps)

    stats = {s["name"]: s for s in got["stats"] if s["name"] in RUNNING}
    assert set(stats) == RUNNING
    for name, st in stats.items():
        assert st["type"] == "io.nats.micro.v1.stats_response"
        assert {e["name"] for e in st["endpoints"]} == {e["name"] for e in infos[name]["endpoints"]}, name
        assert all(e["num_requests"] >= 0 and e["num_errors"] == 0 for e in st["endpoints"]), name
