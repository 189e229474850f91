"""`hive up` end to end: NATS + five services, supervised, stopped cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hivewire.procs import die_with_parent, free_port

pytestmark = pytest.mark.slow

SERVICES = {"hive-broker", "hive-deployer", "hive-dashboard", "hive-backup", "hive-harness"}


def hive(home: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HIVE_HOME": str(home)}
    env.pop("HIVE_NATS_URL", None)
    return subprocess.run([sys.executable, "-m", "hivewire.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def status(home: Path) -> list[dict[str, object]]:
    out = hive(home, "status", "--json", "--wait", "0.4")
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []


def wait_services(home: Path, timeout: float, exclude_pids: set[str] = frozenset()) -> dict[str, dict[str, object]]:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        found = {str(s["name"]): s for s in status(home) if s["metadata"]["pid"] not in exclude_pids}  # type: ignore[index]
        if SERVICES <= set(found):
            return found
        time.sleep(0.3)
    raise AssertionError(f"only {sorted(found)} answered within {timeout}s")


def children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return {int(p) for p in out.stdout.split()}


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for kid in children(todo.pop()):
            if kid not in found:
                found.add(kid)
                todo.append(kid)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_line(path: Path, needle: str, timeout: float = 60) -> str:
    """The file's text once it holds `needle`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text()
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never printed; got:\n{path.read_text()}")


def test_up_status_restart_and_clean_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "HIVE_HOME": str(home), "HIVE_METRICS_ADDR": "127.0.0.1:0",
           "HIVE_DASHBOARD_ADDR": f"127.0.0.1:{free_port()}"}
    env.pop("HIVE_NATS_URL", None)
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "hivewire.cli", "up", "--nats-port", "0"], env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    try:
        started = time.monotonic()
        found = wait_services(home, 15)
        assert time.monotonic() - started < 15
        out = wait_line(tmp_path / "up.log", "Hive is ready")
        assert "dashboard:  http://" in out
        kids = children(up.pid)
        assert len(kids) == 5  # nats + four services; the deployer runs the manager's harness
        assert found["hive-harness"]["metadata"]["agent"] == "manager"  # type: ignore[index]

        broker_pid = int(str(found["hive-broker"]["metadata"]["pid"]))  # type: ignore[index]
        assert broker_pid in kids
        os.kill(broker_pid, signal.SIGKILL)
        again = wait_services(home, 20, exclude_pids={str(broker_pid)})
        assert again["hive-broker"]["metadata"]["pid"] != str(broker_pid)  # type: ignore[index]
        assert "child_exited" in (home / "run" / "logs" / "hive-up.log").read_text()  # logs go to files
        assert "child_exited" not in (tmp_path / "up.log").read_text()

        kids = descendants(up.pid)
        assert len(kids) > 5  # the manager's harness (and its sandbox) run under the deployer
        up.send_signal(signal.SIGTERM)
        up.wait(10)  # clean stop within 10 s
        time.sleep(0.2)
        assert not [k for k in kids if alive(k)], "a process outlived hive up"
        assert not (home / "run" / "nats.url").exists()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        log.close()


def test_up_refuses_unknown_service(tmp_path: Path) -> None:
    out = hive(tmp_path, "up", "--only", "broker,nope")
    assert out.returncode == 2
    assert "unknown service" in out.stderr
