"""`hive up` with NATS auth (the default) and with `--no-auth`, against its real embedded nats-server.

Who is connected as whom is read from nats-server's own monitoring endpoint
(`/connz?auth=true`, enabled with `--nats-monitor-port`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from test_hive_up import alive, descendants, hive, wait_services

from hivewire import natsauth
from hivewire.procs import die_with_parent, free_port

pytestmark = pytest.mark.slow

USERS = {"hive-broker": "svc_broker", "hive-deployer": "svc_deployer", "hive-dashboard": "svc_dashboard",
         "hive-backup": "svc_backup", "hive-harness": "agent_manager"}


class Up:
    def __init__(self, proc: subprocess.Popen[bytes], home: Path, log: Path, monitor: int) -> None:
        self.proc, self.home, self.log, self.monitor = proc, home, log, monitor

    def connz(self) -> list[dict[str, object]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/connz?auth=true&limit=1024", timeout=5) as r:
            conns: list[dict[str, object]] = json.loads(r.read())["connections"] or []
        return conns

    def who(self) -> set[tuple[str, str]]:
        """(connection name, authorized user) of every client."""
        return {(str(c.get("name", "")), str(c.get("authorized_user", ""))) for c in self.connz()}

    def wait_who(self, pred: object, timeout: float = 20) -> set[tuple[str, str]]:
        deadline, got = time.monotonic() + timeout, set()
        while time.monotonic() < deadline:
            try:
                got = self.who()
                if pred(got):  # type: ignore[operator]
                    return got
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"connections never matched: {sorted(got)}")

    @property
    def nats_url(self) -> str:
        return (self.home / "run" / "nats.url").read_text().strip()


@contextmanager
def hive_up(tmp_path: Path, *extra: str) -> Iterator[Up]:
    home = tmp_path / "home"
    monitor = free_port()
    env = {**os.environ, "HIVE_HOME": str(home), "HIVE_METRICS_ADDR": "127.0.0.1:0",
           "HIVE_DASHBOARD_ADDR": f"127.0.0.1:{free_port()}", "HIVE_AGENT_CMD": "/bin/false"}
    for key in ("HIVE_NATS_URL", *natsauth.IDENTITY_ENV):
        env.pop(key, None)
    log_path = tmp_path / "up.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "hivewire.cli", "up", "--nats-port", "0",
                             "--nats-monitor-port", str(monitor), *extra],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=die_with_parent)
    try:
        yield Up(proc, home, log_path, monitor)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def stop_cleanly(up: Up) -> None:
    kids = descendants(up.proc.pid)
    up.proc.send_signal(signal.SIGTERM)
    up.proc.wait(10)
    time.sleep(0.2)
    assert not [k for k in kids if alive(k)], "a process outlived hive up"
    assert not (up.home / "run" / "nats.url").exists()
    assert not natsauth.pid_path(up.home).exists()


PROBE = "hive-test-probe"  # this test's own connections (their refused operations are on purpose)


async def connect_with(url: str, env: dict[str, str]) -> nats.aio.client.Client:
    creds = natsauth.resolve_credentials(env)
    opts = creds.connect_options() if creds else {}
    return await nats.connect(url, name=PROBE, allow_reconnect=False, connect_timeout=3, max_reconnect_attempts=0,
                              **opts)


def run_quietly(coro: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, then collect what nats-py leaves behind of a refused connect (its leak, not ours)."""
    asyncio.run(coro)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


async def refused_request(nc: nats.aio.client.Client, subject: str) -> bool:
    try:
        await nc.request(subject, b"{}", timeout=2)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return True
    return False


def test_up_runs_with_auth_by_default(tmp_path: Path) -> None:
    with hive_up(tmp_path) as up:
        started = time.monotonic()
        found = wait_services(up.home, 15)
        assert time.monotonic() - started < 15
        assert "nats auth: on" in up.log.read_text()
        assert natsauth.enabled(up.home)
        # every service, and the manager's harness the deployer spawned, runs as its own user
        assert set(USERS.items()) <= up.wait_who(lambda w: set(USERS.items()) <= w)
        assert found["hive-harness"]["metadata"]["agent"] == "manager"  # type: ignore[index]

        # the operator's CLI finds its credentials by itself (HIVE_HOME/nats/creds/operator.env)
        sent = hive(up.home, "send", "manager", "hello from the operator")
        assert sent.returncode == 0, sent.stderr
        tap = subprocess.Popen([sys.executable, "-m", "hivewire.cli", "tap", "hive.agent.manager.presence"],
                               env={**os.environ, "HIVE_HOME": str(up.home)}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        time.sleep(8)  # heartbeats come every few seconds
        tap.send_signal(signal.SIGINT)
        out, _ = tap.communicate(timeout=10)
        assert out.count("hive.agent.manager.presence") >= 2, out  # the banner, then heartbeats

        run_quietly(_auth_is_enforced(up))

        # a spawn (a new user: nats-server reloads) is answered, and destroy cuts the agent off
        spawned = hive(up.home, "agents", "spawn", "alice", timeout=60)
        assert spawned.returncode == 0, spawned.stdout + spawned.stderr
        up.wait_who(lambda w: ("hive-harness", "agent_alice") in w)
        destroyed = hive(up.home, "agents", "destroy", "alice", timeout=60)
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
        assert "agent_alice" not in natsauth.users(up.home)
        up.wait_who(lambda w: ("hive-harness", "agent_alice") not in w)

        # kill -9: a service and nats-server itself come back, everyone with its own user again
        broker_pid = int(str(found["hive-broker"]["metadata"]["pid"]))  # type: ignore[index]
        os.kill(broker_pid, signal.SIGKILL)
        wait_services(up.home, 20, exclude_pids={str(broker_pid)})
        nats_pid = int(natsauth.pid_path(up.home).read_text())
        os.kill(nats_pid, signal.SIGKILL)
        up.wait_who(lambda w: set(USERS.items()) <= w, timeout=40)
        wait_services(up.home, 20)
        assert int(natsauth.pid_path(up.home).read_text()) != nats_pid
        violations = [line for line in (up.home / "run/logs/nats.log").read_text().splitlines()
                      if "Violation" in line and PROBE not in line]
        assert not violations, violations[:5]

        stop_cleanly(up)


async def _auth_is_enforced(up: Up) -> None:
    home = up.home
    # no credentials: refused
    try:
        nc = await connect_with(up.nats_url, {"HIVE_NATS_CREDS": "none"})
    except Exception as exc:  # the exact class varies with nats-py's version
        assert "authorization" in str(exc).lower() or isinstance(exc, nats.errors.Error), exc
    else:
        await nc.close()
        raise AssertionError("a connection without credentials was accepted")
    manager = await connect_with(up.nats_url, {"HIVE_NATS_CREDS": str(natsauth.creds_path(home, "agent_manager"))})
    try:
        # what the manager may do works ...
        counts = await manager.request("hive.broker.manager.counts", b"{}", timeout=5)
        assert b"unread" in counts.data
        # ... speaking as someone else, resolving approvals or reading the operator's subjects does not
        assert await refused_request(manager, "hive.broker.operator.send")
        assert await refused_request(manager, "hive.operator.approvals.list")
    finally:
        await manager.close()


def test_up_no_auth(tmp_path: Path) -> None:
    with hive_up(tmp_path, "--no-auth") as up:
        wait_services(up.home, 15)
        assert "nats auth: OFF" in up.log.read_text()
        assert not natsauth.enabled(up.home)
        who = up.wait_who(lambda w: {n for n, _ in w} >= set(USERS))
        assert all(user == "" for _, user in who), who  # nobody authenticated: there are no users

        async def anonymous() -> None:
            nc = await connect_with(up.nats_url, {"HIVE_NATS_CREDS": "none"})
            try:
                assert b"unread" in (await nc.request("hive.broker.manager.counts", b"{}", timeout=5)).data
            finally:
                await nc.close()

        run_quietly(anonymous())
        stop_cleanly(up)
