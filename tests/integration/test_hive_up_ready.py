"""`hive up`'s first minute: a busy dashboard port, one ready block, logs in files."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hivewire.cli.upready import plan_ports
from hivewire.procs import die_with_parent
from hivewire.settings import Settings

pytestmark = pytest.mark.slow

DEFAULT_DASHBOARD_PORT = 8000


def get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def occupy(port: int) -> socket.socket | None:
    """Listen on 127.0.0.1:port; None when something else already does (busy either way)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    sock.listen(1)
    return sock


def wait_for(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text()
        if needle in text:
            return text
        assert proc.poll() is None, f"hive up exited: {text}"
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never printed:\n{path.read_text()}")


def test_busy_dashboard_port_falls_back_and_ready_block_tells_the_truth(tmp_path: Path) -> None:
    busy = occupy(DEFAULT_DASHBOARD_PORT)
    home = tmp_path / "home"
    env = {**os.environ, "HIVE_HOME": str(home), "HIVE_METRICS_ADDR": "127.0.0.1:0", "HIVE_AGENT_CMD": "/bin/false",
           "COLUMNS": "40"}  # a narrow terminal must not wrap the path or URL
    for key in ("HIVE_NATS_URL", "HIVE_DASHBOARD_ADDR", "HIVE_OPERATOR_TOKEN"):
        env.pop(key, None)
    out_path, err_path = tmp_path / "up.out", tmp_path / "up.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        up = subprocess.Popen([sys.executable, "-m", "hivewire.cli", "up", "--nats-port", "0"], env=env,
                              stdout=out, stderr=err, start_new_session=True, preexec_fn=die_with_parent)
    try:
        text = wait_for(out_path, "stop:", up)
        # the block is printed only once /healthz answers: the very first probe must succeed
        url = re.search(r"dashboard:\s+(http://127\.0\.0\.1:(\d+)/)\n", text)
        assert url, text
        assert int(url.group(2)) != DEFAULT_DASHBOARD_PORT
        assert get(url.group(1) + "healthz") == 200
        assert "dashboard port 8000 is busy" in text
        # the token file's path is on one line and its token logs in there
        token_path = re.search(r"token:\s+(\S+)", text)
        assert token_path, text
        token = Path(token_path.group(1)).read_text().strip()
        assert get(url.group(1) + "api/agents") == 401
        assert get(url.group(1) + "api/agents", token) != 401
        # one ready block, nothing claims "up" before it, no JSON log lines on the console
        assert text.count("Hive is ready") == 1 and "Hive is up" not in text
        assert text.index("dashboard port 8000 is busy") < text.index("Hive is ready")
        console = text + err_path.read_text()
        assert not [line for line in console.splitlines() if line.lstrip().startswith("{")], console
        logged = [json.loads(line) for line in (home / "run" / "logs" / "hive-up.log").read_text().splitlines()]
        assert any(rec["event"] == "child_started" for rec in logged)
        # `hive status | cat`: whole tab-separated rows; each hive-harness names its agent
        harness: list[str] = []
        deadline = time.monotonic() + 60
        while not harness and time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-m", "hivewire.cli", "status"], env=env, capture_output=True,
                                 text=True, timeout=30, check=False).stdout
            harness = [line for line in out.splitlines() if line.startswith("hive-harness\t")]
        assert harness and harness[0].split("\t")[1] == "manager", out
        up.send_signal(signal.SIGTERM)
        assert up.wait(15) == 0
        assert "stopped" in out_path.read_text()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        if busy is not None:
            busy.close()


def test_plan_ports_replaces_every_busy_port(tmp_path: Path) -> None:
    holders = [socket.socket() for _ in range(3)]
    try:
        for h in holders:
            h.bind(("127.0.0.1", 0))
            h.listen(1)
        nats, dash, metrics = (h.getsockname()[1] for h in holders)
        s = Settings(home=tmp_path, dashboard_addr=f"127.0.0.1:{dash}", metrics_addr=f"127.0.0.1:{metrics}")
        ports = plan_ports(s, ("broker", "dashboard"), nats)
        assert ports.nats not in (0, nats) and ports.dashboard not in (0, dash)
        assert ports.dashboard_url == f"http://127.0.0.1:{ports.dashboard}/"
        assert ports.env["dashboard"] == {"HIVE_DASHBOARD_ADDR": f"127.0.0.1:{ports.dashboard}"}
        assert ports.env["broker"]["HIVE_METRICS_ADDR"] != f"127.0.0.1:{metrics}"
        assert len(ports.notes) == 3
    finally:
        for h in holders:
            h.close()
    free = Settings(home=tmp_path, dashboard_addr="0.0.0.0:0")
    ports = plan_ports(free, ("dashboard",), 0)
    assert ports.dashboard and ports.dashboard_url.startswith("http://127.0.0.1:")
