"""Prometheus targets for agents on agent hosts (hivewire.promsd.set_host, hive_deployer.hostmetrics).

In-process and fast: the real hive-deployer (core host `core`, its join endpoint on loopback)
and a real hive-agenthost service as host `h2` on one real nats-server. h2's "harness" is a
small script serving a real /metrics on HIVE_HOST_METRICS_BIND and announcing it in its state
dir, as the harness does. A target is the address the host joined from and only the port it
reports; a port out of range or for an agent not placed on that host is refused, logged and
counted; a lost or removed host has no targets. The written file_sd JSON passes
`promtool check config`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
from hive_agenthost.service import AgentHostService

from hive_deployer import metrics
from hive_deployer.lifecycle import Options
from hive_deployer.runtimes import ProcessRuntime
from hive_deployer.service import DeployerService
from hivewire import promsd, subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import ops
from hivewire.wire.hosts import (
    HostAddRequest,
    HostAgentInfo,
    HostHeartbeat,
    HostNameRequest,
    HostStartRequest,
    HostStopRequest,
    JoinRequest,
)
from tests.support.procs import wait_for

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
HAVE_PROMTOOL = Path(PROMTOOL).exists()
HARNESS = """
import json, os, pathlib, time
from hivewire.metrics import serve_metrics
host, _, port = os.environ["HIVE_METRICS_ADDR"].rpartition(":")
h, p, _server = serve_metrics(host, int(port))
state = pathlib.Path(os.environ["HIVE_EVENTS_DB"]).parent
(state / "metrics.json").write_text(json.dumps({"instance": "i1", "metrics_url": f"http://{h}:{p}/metrics"}))
while True:
    time.sleep(60)
"""


def groups(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text()))
    except FileNotFoundError:
        return []


def of_host(path: Path, host: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """agent (or service) -> (targets, labels) of `host`'s groups in a file_sd file."""
    return {g["labels"].get("agent") or g["labels"]["service"]: (g["targets"], g["labels"])
            for g in groups(path) if g["labels"].get("host") == host}


def fetch(req: str | urllib.request.Request) -> tuple[int, bytes]:
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status), bytes(r.read())


def failures() -> float:
    return float(metrics.FAILURES.labels("promsd")._value.get())


@pytest.fixture
async def hive(settings: Settings, nats_transport: NatsTransport, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    for k, v in {"HIVE_DEPLOYER_ENSURE_MANAGER": "0", "HIVE_HOST_NAME": "core", "HIVE_HOST_LOST_S": "2",
                 "HIVE_HOST_HEARTBEAT_S": "0.3", "HIVE_JOIN_ADDR": "127.0.0.1:0", "HIVE_NATS_CREDS": "none",
                 "HIVE_HOST_METRICS_BIND": "127.0.0.1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("HIVE_PROMSD_FILE", raising=False)
    script = tmp_path / "fake_harness.py"
    script.write_text(HARNESS)
    monkeypatch.setenv("HIVE_DEPLOYER_HARNESS_CMD", f"{sys.executable} {script}")
    now = time.time()
    reg = settings.home / "hosts" / "registry.json"
    reg.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    reg.write_text(json.dumps({"hosts": {"h2": {"state": "online", "added_at": now, "joined_at": now,
                                                "token_used": True, "addr": "127.0.0.1"}},
                               "placements": {"bob": "h2", "carol": "h3", "dave": "h3"}}))
    svc = DeployerService(nats_transport, settings, runtime=ProcessRuntime(allow_unconfined=True),
                          options=Options(stop_timeout=5.0), ensure_manager=False)
    await svc.start()
    h2_home = tmp_path / "h2"
    h2_home.mkdir()
    # Its own /metrics as it would report it bound on every address: only the port may reach the target.
    h2 = AgentHostService(nats_transport, Settings(home=h2_home, nats_url=settings.nats_url),
                          metrics_url="http://0.0.0.0:45678/metrics", host="h2",
                          runtime=ProcessRuntime(allow_unconfined=True))
    await h2.start()
    try:
        yield {"svc": svc, "h2": h2, "h2_home": h2_home, "client": HiveClient(nats_transport, timeout=30.0),
               "home": settings.home, "nats": nats_transport}
    finally:
        for s in (h2, svc):
            if s._handle is not None:
                await s.stop()


async def test_remote_targets_use_the_registered_address_and_only_the_reported_port(
        hive: dict[str, Any], tmp_path: Path) -> None:
    home, client, h2 = hive["home"], hive["client"], hive["h2"]
    agents_file, hosts_file = promsd.sd_path(home), promsd.hosts_sd_path(home)
    await client.request(ops.HOST_START, HostStartRequest(agent="bob"), host="h2")

    async def listed() -> dict[str, Any] | None:
        got = of_host(agents_file, "h2")
        return got if "bob" in got else None

    got = await wait_for(listed, timeout=20)
    assert got
    announced = json.loads((hive["h2_home"] / "agents/bob/state/metrics.json").read_text())["metrics_url"]
    port = promsd.url_port(announced)
    targets, labels = got["bob"]
    assert targets == [f"127.0.0.1:{port}"]
    assert labels == {"agent": "bob", "service": "hive-harness", "host": "h2", "__metrics_path__": "/metrics"}
    status, body = await asyncio.to_thread(fetch, f"http://{targets[0]}/metrics")  # Prometheus can scrape it
    assert status == 200 and b"# TYPE" in body
    # hive-agenthost's own /metrics: said to be on 0.0.0.0, listed at the address h2 joined from
    assert of_host(hosts_file, "h2") == {"hive-agenthost": (["127.0.0.1:45678"], {
        "service": "hive-agenthost", "host": "h2", "__metrics_path__": "/metrics"})}

    # The agent rewrites its metrics.json to point elsewhere: h2 reports the port only, or nothing.
    state = hive["h2_home"] / "agents/bob/state"
    (state / promsd.ANNOUNCE_FILE).write_text(json.dumps({"metrics_url": "http://169.254.169.254/latest"}))
    with structlog.testing.capture_logs() as logs:
        hb = h2.heartbeat()
    assert [a.metrics_port for a in hb.agents] == [0]
    assert [e for e in logs if e["event"] == "metrics_port_refused" and e["what"] == "bob"]
    (state / promsd.ANNOUNCE_FILE).write_text(json.dumps({"metrics_url": f"http://10.6.6.6:{port}/metrics"}))
    assert [a.metrics_port for a in h2.heartbeat().agents] == [port]

    # The written file_sd JSON is what Prometheus accepts
    if HAVE_PROMTOOL:
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("scrape_configs:\n" + "".join(
            f"  - job_name: {job}\n    file_sd_configs:\n      - files: [\"{f}\"]\n"
            for job, f in (("hive-agents", agents_file), ("hive-hosts", hosts_file))))
        r = subprocess.run([PROMTOOL, "check", "config", str(cfg)], capture_output=True, timeout=60, check=False)
        assert r.returncode == 0, r.stdout + r.stderr

    # Stopped: gone with h2's next report
    await client.request(ops.HOST_STOP, HostStopRequest(agent="bob", timeout=5.0), host="h2")

    async def unlisted() -> bool:
        return "bob" not in of_host(agents_file, "h2")

    assert await wait_for(unlisted, timeout=10)

    # Removed: none of h2's targets are left
    await h2.stop()
    await client.request(ops.HOSTS_REMOVE, HostNameRequest(name="h2", force=True))
    assert of_host(agents_file, "h2") == {} and of_host(hosts_file, "h2") == {}


async def test_a_joined_host_is_scraped_at_its_join_address_and_bad_reports_are_refused(
        hive: dict[str, Any]) -> None:
    svc, home, client = hive["svc"], hive["home"], hive["client"]
    agents_file, hosts_file = promsd.sd_path(home), promsd.hosts_sd_path(home)
    add = await client.request(ops.HOSTS_ADD, HostAddRequest(name="h3"))
    assert svc.hosts.join_server is not None
    req = urllib.request.Request(f"http://127.0.0.1:{svc.hosts.join_server.port}/join", method="POST",
                                 data=msgspec.json.encode(JoinRequest(name="h3", token=add.token)),
                                 headers={"Content-Type": "application/json"})
    assert (await asyncio.to_thread(fetch, req))[0] == 200
    assert svc.hosts.reg.hosts["h3"]["addr"] == "127.0.0.1"  # the join request's sender
    assert json.loads((home / "hosts" / "registry.json").read_text())["hosts"]["h3"]["addr"] == "127.0.0.1"

    # h3, compromised, reports bob (placed on h2), carol with port 70000, dave with a good port
    before = failures()
    hb = HostHeartbeat(host="h3", sent_at=time.time(), metrics_port=9414, pool_metrics_port=0, agents=[
        HostAgentInfo(name="bob", pid=1, started_at=0.0, metrics_port=4000),
        HostAgentInfo(name="carol", pid=1, started_at=0.0, metrics_port=70000),
        HostAgentInfo(name="dave", pid=1, started_at=0.0, metrics_port=4001)])
    with structlog.testing.capture_logs() as logs:
        await hive["nats"].publish(subjects.host_up("h3", "heartbeat"), msgspec.json.encode(hb))

        async def listed() -> dict[str, Any] | None:
            got = of_host(agents_file, "h3")
            return got if "dave" in got and of_host(hosts_file, "h3") else None  # both files written

        got = await wait_for(listed, timeout=10)
    assert got and {a: t for a, (t, _) in got.items()} == {"dave": ["127.0.0.1:4001"]}
    assert of_host(hosts_file, "h3") == {"hive-agenthost": (["127.0.0.1:9414"], {
        "service": "hive-agenthost", "host": "h3", "__metrics_path__": "/metrics"})}
    refused = {(e["agent"], e["reason"]) for e in logs if e["event"] == "host_metrics_port_refused"}
    assert refused == {("bob", "not placed on this host"), ("carol", "not a port")}
    assert failures() == before + 2

    # h3 falls silent: lost, and its targets go; h2 (still reporting) keeps its own
    async def lost() -> bool:
        return svc.hosts.lost("h3") and of_host(agents_file, "h3") == {} and of_host(hosts_file, "h3") == {}

    assert await wait_for(lost, timeout=15)
    assert of_host(hosts_file, "h2")

    # back: listed again with its next report
    await hive["nats"].publish(subjects.host_up("h3", "heartbeat"),
                               msgspec.json.encode(msgspec.structs.replace(hb, sent_at=time.time())))

    async def back() -> bool:
        return "dave" in of_host(agents_file, "h3") and bool(of_host(hosts_file, "h3"))

    assert await wait_for(back, timeout=10)


def test_set_host_refuses_an_address_or_port_it_cannot_trust(tmp_path: Path) -> None:
    for addr, port in (("evil.example", 80), ("10.0.0.1", 0), ("10.0.0.1", 65536), ("10.0.0.1", True)):
        with pytest.raises(ValueError):
            promsd.set_host(tmp_path, "h9", addr, {"a": port}, {})  # type: ignore[dict-item]
    assert not promsd.sd_path(tmp_path).exists()
    promsd.set_host(tmp_path, "h9", "fd00::5", {"a": 4000}, {"hive-agenthost": 4001})
    assert of_host(promsd.sd_path(tmp_path), "h9")["a"][0] == ["[fd00::5]:4000"]
    promsd.set_agent(tmp_path, "local", "http://127.0.0.1:40001/metrics")  # a core-host agent beside them
    assert promsd.set_host(tmp_path, "h9", None, {}, {})
    assert promsd.read_targets(promsd.sd_path(tmp_path)) == {"local": "http://127.0.0.1:40001/metrics"}
    assert groups(promsd.hosts_sd_path(tmp_path)) == []

