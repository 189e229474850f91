"""The hostile agent under the default `hive up`: embedded NATS with auth, the default runtime.

The manager agent's CLI is `hostile_agent.sh`; a message from the operator
starts its turn. Its targets are the running hive's own secrets (NATS
credentials, operator token, broker.sqlite, another agent's login), the
dashboard's port, a host unix socket and an abstract one, and a private file in
the operator's home. Every probe must be blocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hivewire.procs import die_with_parent, free_port

from .hostile import PROBES, SCRIPT, Host, needs_bwrap, survivors

pytestmark = [needs_bwrap, pytest.mark.slow]


def _hive(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_NATS")}
    return subprocess.run([sys.executable, "-m", "hivewire.cli", *args], env={**env, "HIVE_HOME": str(home)},
                          capture_output=True, text=True, timeout=30, check=False)


def _wait_for(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout}s")


def test_a_hostile_manager_escapes_nothing_under_hive_up(host: Host, tmp_path: Path) -> None:
    home = host.home.parent / "up"  # outside /tmp: the sandbox's /tmp is its own and would hide it anyway
    (home / "agents/bob/creds").mkdir(parents=True)
    (home / "agents/bob/creds/.credentials.json").write_text('{"token": "bob-secret"}')
    dash = free_port()
    targets = [f"HOSTILE_OPERATOR_SECRET={host.secret}", f"HOSTILE_OTHER_AGENT_DIR={home}/agents/bob",
               f"HOSTILE_NATS_DIR={home}/nats", f"HOSTILE_OPERATOR_TOKEN_FILE={home}/operator.token",
               f"HOSTILE_BROKER_DB={home}/broker.sqlite", f"HOSTILE_TCP_PORT={dash}",
               f"HOSTILE_UNIX_SOCKET={host.unix_socket}", f"HOSTILE_ABSTRACT_SOCKET={host.abstract}",
               "HOSTILE_FORK=200", "HOSTILE_MEMORY_MB=512"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_NATS")}
    env.update(HIVE_HOME=str(home), HIVE_DASHBOARD_ADDR=f"127.0.0.1:{dash}", HIVE_METRICS_ADDR="127.0.0.1:0",
               HIVE_AGENT_CMD=" ".join([str(SCRIPT), *targets]), HIVE_SANDBOX_PIDS_MAX="64",
               HIVE_SANDBOX_MEMORY_MAX="128M", ANTHROPIC_API_KEY="sk-not-used")
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "hivewire.cli", "up", "--nats-port", "0"], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              preexec_fn=die_with_parent)
    report = home / "agents/manager/state/hostile-report.txt"
    try:
        _wait_for(lambda: "Hive is ready" in (tmp_path / "up.log").read_text(), 60, "hive up was not ready")
        # the dashboard's port really is served on the host: the probe of it must fail for the sandbox only
        with __import__("socket").create_connection(("127.0.0.1", dash), timeout=5):
            pass
        sent = _hive(home, "send", "manager", "hello, manager")
        assert sent.returncode == 0, sent.stderr
        _wait_for(lambda: report.exists() and "DONE" in report.read_text(), 120, "the hostile turn never finished")
        lines = report.read_text().splitlines()
        got = {ln.split(" ", 2)[1]: ln for ln in lines if ln.startswith(("BLOCKED ", "ESCAPED "))}
        assert set(got) == set(PROBES), sorted(set(PROBES) ^ set(got))
        assert [ln for ln in got.values() if ln.startswith("ESCAPED")] == []
        # the targets were real: NATS credentials on disk, the operator token in hive up's environment
        assert any((home / "nats/creds").iterdir()) and os.environ["HIVE_OPERATOR_TOKEN"]
        _wait_for(lambda: not survivors(), 10, "a process the agent left outlived its turn")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
