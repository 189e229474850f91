"""HIVE_HOME is private: created (or tightened to) 0700, and every process runs with
umask 077, so databases (-wal/-shm too), logs, tokens and credentials are 0600."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog

from hivewire import natsauth
from hivewire.procs import die_with_parent, free_port
from hivewire.settings import secure_home


def open_bits(home: Path) -> dict[str, str]:
    """Every path under `home` (and `home`) that group or others may use, with its mode."""
    found = {}
    for p in [home, *home.rglob("*")]:
        if p.is_symlink():
            continue
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & 0o077:
            found[str(p.relative_to(home.parent))] = oct(mode)
    return found


def test_secure_home_creates_and_tightens(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = secure_home(tmp_path / "a" / "home")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
        assert os.umask(0o077) == 0o077  # secure_home set it
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        os.chmod(shared, 0o775)
        with structlog.testing.capture_logs() as logs:
            secure_home(shared)
        assert stat.S_IMODE(shared.stat().st_mode) == 0o700
        assert [e for e in logs if e["event"] == "hive_home_tightened" and e["mode"] == "0o775"]
        with structlog.testing.capture_logs() as logs:
            secure_home(shared)  # already private: nothing to say
        assert logs == []
        (shared / "f").write_text("x")
        assert stat.S_IMODE((shared / "f").stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.slow
def test_hive_up_leaves_nothing_readable_by_others(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # an existing, world-readable HIVE_HOME
    env = {**os.environ, "HIVE_HOME": str(home), "HIVE_METRICS_ADDR": "127.0.0.1:0",
           "HIVE_DASHBOARD_ADDR": f"127.0.0.1:{free_port()}"}
    for key in ("HIVE_NATS_URL", *natsauth.IDENTITY_ENV):
        env.pop(key, None)
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "hivewire.cli", "up", "--nats-port", "0", "--only",
                           "broker,dashboard"], env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True, preexec_fn=die_with_parent, umask=0o022)
    want = [home / "broker.sqlite", home / "broker.sqlite-wal", home / "broker.sqlite-shm",
            home / "operator.token", home / "run" / "logs" / "broker.log", home / "run" / "logs" / "nats.log",
            home / "nats" / "users.json"]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(p.exists() for p in want):
            time.sleep(0.2)
        missing = [str(p) for p in want if not p.exists()]
        assert not missing, (missing, (tmp_path / "up.log").read_text()[-3000:])
        assert open_bits(home) == {}
        logs = (tmp_path / "up.log").read_text() + "".join(
            p.read_text() for p in (home / "run" / "logs").glob("*.log"))
        assert "hive_home_tightened" in logs
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
        log.close()
    assert open_bits(home) == {}


def test_operator_token_reaches_only_the_dashboard(tmp_path: Path) -> None:
    """`hive up` passes HIVE_OPERATOR_TOKEN from its own environment to the dashboard only:
    the deployer hands its environment on to agents."""
    from hivewire.cli.up import service_specs
    from hivewire.settings import Settings

    s = Settings.from_env({"HIVE_HOME": str(tmp_path), "HIVE_OPERATOR_TOKEN": "sekret"})
    specs = {c.name: c.env for c in service_specs(s, "nats://127.0.0.1:1")}
    assert set(specs) == {"broker", "deployer", "dashboard", "backup"}
    assert specs["dashboard"]["HIVE_OPERATOR_TOKEN"] == "sekret"
    for short in ("broker", "deployer", "backup"):
        # "" overrides what the supervisor inherits from os.environ, and Settings reads it as unset
        assert specs[short]["HIVE_OPERATOR_TOKEN"] == "", short
        assert Settings.from_env({**os.environ, **specs[short]}).operator_token is None
    unset = {c.name: c.env for c in service_specs(Settings(home=tmp_path), "nats://127.0.0.1:1")}
    assert all(env["HIVE_OPERATOR_TOKEN"] == "" for env in unset.values())  # the dashboard reads operator.token
