"""Prometheus: config and rules pass promtool, every service's /metrics passes
`promtool check metrics`, and a real Prometheus scrapes the running stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hivewire import promsd
from hivewire.procs import die_with_parent, free_port, stop_process, wait_port

from support.procs import ServiceProcess

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SERVICES = ("broker", "deployer", "backup", "dashboard", "harness")

pytestmark = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool not installed")


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, timeout=60, check=False)


def test_config_rules_and_rule_unit_tests() -> None:
    r = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("check", "rules", str(PROM / "rules" / "hive.rules.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("test", "rules", str(PROM / "rules" / "hive.rules.test.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    alerts = {r["alert"] for g in yaml.safe_load((PROM / "rules" / "hive.rules.yml").read_text())["groups"]
              for r in g["rules"]}
    assert {"HiveServiceDown", "HiveBackupTooOld", "HiveAgentRateLimited", "HiveAgentNeedsLogin",
            "HiveAgentDead", "HiveInboxDepthGrowing"} <= alerts


def test_scrape_config_covers_every_service_and_agents() -> None:
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["hive-broker"]["static_configs"][0]["targets"] == ["127.0.0.1:9411"]
    assert jobs["hive-deployer"]["static_configs"][0]["targets"] == ["127.0.0.1:9412"]
    assert jobs["hive-backup"]["static_configs"][0]["targets"] == ["127.0.0.1:9413"]
    assert jobs["hive-dashboard"]["metrics_path"] == "/metrics"
    assert jobs["hive-agents"]["file_sd_configs"][0]["files"] == ["/var/lib/hive/prometheus/agents.json"]
    assert jobs["hive-hosts"]["file_sd_configs"][0]["files"] == ["/var/lib/hive/prometheus/hosts.json"]
    from hivewire.settings import DEFAULT_METRICS_PORTS

    for short in ("broker", "deployer", "backup"):
        assert jobs[f"hive-{short}"]["static_configs"][0]["targets"] == [f"127.0.0.1:{DEFAULT_METRICS_PORTS[short]}"]


def test_grafana_dashboard_queries_known_metrics() -> None:
    d = json.loads((PROM / "grafana" / "hive-dashboard.json").read_text())
    assert d["uid"] and d["panels"]
    exprs = [t["expr"] for p in d["panels"] for t in p["targets"]]
    files = [*REPO.glob("services/*/hive_*/*.py"), *REPO.glob("libs/hivewire/hivewire/*.py")]
    source = "\n".join(p.read_text() for p in files)
    for name in {m for e in exprs for m in re.findall(r"\bhive_[a-z_]+", e)}:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f'"{base}"' in source, f"dashboard queries {name}, which no service exports"


def test_file_sd_writer(tmp_path: Path) -> None:
    home = tmp_path / "h"
    promsd.set_agent(home, "alice", "http://127.0.0.1:40001/metrics")
    promsd.set_agent(home, "bob", "http://127.0.0.1:40002/metrics")
    promsd.set_agent(home, "alice", "http://127.0.0.1:40003/metrics")
    groups = json.loads(promsd.sd_path(home).read_text())
    assert groups == [
        {"targets": ["127.0.0.1:40003"], "labels": {"agent": "alice", "service": "hive-harness",
                                                    "__metrics_path__": "/metrics"}},
        {"targets": ["127.0.0.1:40002"], "labels": {"agent": "bob", "service": "hive-harness",
                                                    "__metrics_path__": "/metrics"}},
    ]
    assert promsd.set_agent(home, "bob", None) == {"alice": "http://127.0.0.1:40003/metrics"}
    with pytest.raises(ValueError):
        promsd.set_agent(home, "carol", "not a url")
    assert promsd.read_targets(promsd.sd_path(home)) == {"alice": "http://127.0.0.1:40003/metrics"}


def test_file_sd_can_live_outside_the_private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HIVE_HOME is 0700; a Prometheus running as another user reads HIVE_PROMSD_FILE, world-readable."""
    monkeypatch.setenv("HIVE_PROMSD_FILE", str(tmp_path / "promsd/agents.json"))
    old = os.umask(0o077)
    try:
        promsd.set_agent(tmp_path / "h", "alice", "http://127.0.0.1:40001/metrics")
    finally:
        os.umask(old)
    f = tmp_path / "promsd/agents.json"
    assert promsd.sd_path(tmp_path / "h") == f and f.stat().st_mode & 0o777 == 0o644
    assert promsd.read_targets(f) == {"alice": "http://127.0.0.1:40001/metrics"}
    compose_prom = yaml.safe_load((REPO / "compose/prometheus.yml").read_text())
    job = {j["job_name"]: j for j in compose_prom["scrape_configs"]}["hive-agents"]
    compose = yaml.safe_load((REPO / "compose/docker-compose.yml").read_text())["services"]
    assert job["file_sd_configs"][0]["files"] == [compose["deployer"]["environment"]["HIVE_PROMSD_FILE"]]
    assert "hive-promsd:/var/lib/hive-promsd:ro" in compose["prometheus"]["volumes"]


# --- a running stack ----------------------------------------------------------
class Stack:
    def __init__(self, procs: dict[str, ServiceProcess], urls: dict[str, str], home: Path) -> None:
        self.procs, self.urls, self.home = procs, urls, home


def _metrics_url(proc: ServiceProcess, deadline: float) -> str:
    while time.monotonic() < deadline:
        m = re.search(r'"metrics_url": "([^"]+)"', proc.log())
        if m:
            return m.group(1)
        assert proc.proc is not None and proc.proc.poll() is None, proc.log()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"{proc.short} never logged its metrics_url:\n{proc.log()[-3000:]}")


@pytest.fixture(scope="module")
def stack(nats_server: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("prom") / "hive"
    home.mkdir()
    dash_port = free_port()
    base = {
        "HIVE_HOME": str(home), "HIVE_NATS_URL": nats_server.url,  # type: ignore[attr-defined]
        "HIVE_METRICS_ADDR": "127.0.0.1:0", "HIVE_DASHBOARD_ADDR": f"127.0.0.1:{dash_port}",
        "HIVE_OPERATOR_TOKEN": "test-token", "HIVE_NATS_CREDS": "none", "HIVE_AGENT_CMD": "/bin/false",
        # one harness process per agent: each is its own scrape target (a pool is one target for all)
        "HIVE_HARNESS_POOL": "0",
    }
    procs: dict[str, ServiceProcess] = {}
    try:
        for short in SERVICES:
            env = dict(base)
            if short == "harness":
                env["HIVE_AGENT"] = "promtest"
                env["HIVE_EVENTS_DB"] = str(home / "promtest-events.sqlite")
                env["HIVE_MODEL_FILE"] = str(home / "promtest-model")
            procs[short] = ServiceProcess(short, env, home / "logs").start()
        deadline = time.monotonic() + 45
        urls = {s: _metrics_url(p, deadline) for s, p in procs.items() if s != "dashboard"}
        assert wait_port("127.0.0.1", dash_port, 30), procs["dashboard"].log()[-3000:]
        urls["dashboard"] = f"http://127.0.0.1:{dash_port}/metrics"
        yield Stack(procs, urls, home)
    finally:
        for p in procs.values():
            p.stop()


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


@pytest.mark.slow
def test_promtool_check_metrics_on_every_service(stack: Stack) -> None:
    for short, url in stack.urls.items():
        body = _get(url)
        assert b"hive_" in body, short
        r = promtool("check", "metrics", stdin=body)
        assert r.returncode == 0, f"{short} {url}: {r.stdout.decode()}{r.stderr.decode()}"


@pytest.mark.slow
def test_real_prometheus_scrapes_every_target(stack: Stack, tmp_path: Path) -> None:
    if not Path(PROMETHEUS).exists():
        pytest.skip("prometheus not installed")
    # The repo's config, pointed at this stack's ports and HIVE_HOME.
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    cfg["global"]["scrape_interval"] = "1s"
    cfg["global"]["evaluation_interval"] = "1s"
    cfg["rule_files"] = [str(PROM / "rules" / "hive.rules.yml")]
    hostport = {s: re.sub(r"^https?://([^/]+)/.*$", r"\1", u) for s, u in stack.urls.items()}
    for job in cfg["scrape_configs"]:
        short = job["job_name"].removeprefix("hive-")
        if "static_configs" in job:
            job["static_configs"][0]["targets"] = [hostport[short]]
        else:
            sd = promsd.hosts_sd_path if short == "hosts" else promsd.sd_path
            job["file_sd_configs"][0]["files"] = [str(sd(stack.home))]
            job["file_sd_configs"][0]["refresh_interval"] = "1s"
    promsd.set_agent(stack.home, "promtest", stack.urls["harness"])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
    )
    log.close()
    try:
        want = {"hive-broker", "hive-deployer", "hive-backup", "hive-dashboard", "hive-agents"}
        deadline = time.monotonic() + 40
        last: object = None
        while time.monotonic() < deadline:
            try:
                data = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/query?query=up"))
                last = data["data"]["result"]
                up = {r["metric"]["job"]: r["value"][1] for r in data["data"]["result"]}
                # agents: `promtest` listed here, `manager` listed by the deployer (it spawned it)
                agents = {r["metric"]["agent"]: r["value"][1] for r in data["data"]["result"]
                          if r["metric"]["job"] == "hive-agents"}
                if set(up) >= want and all(up[j] == "1" for j in want) and \
                        agents == {"promtest": "1", "manager": "1"}:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"not every target up: {last}\n{(tmp_path / 'prometheus.log').read_text()[-3000:]}")
        rules = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/rules"))
        assert rules["status"] == "success" and rules["data"]["groups"]
    finally:
        stop_process(proc)

