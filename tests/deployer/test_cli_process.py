"""`python -m hive_deployer` as a real process (defaults: bwrap runtime, ensure manager) + the CLI plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hivewire.wire import ops
from hivewire.wire.common import Empty
from tests.support.procs import ServiceProcess, wait_for

pytestmark = pytest.mark.slow


def hive(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "from hivewire.cli import main; import sys; sys.argv = ['hive', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)


async def test_deployer_process_and_cli(hive_home: Path, nats_url: str, nats_transport, tmp_path: Path) -> None:
    env = {"HIVE_HOME": str(hive_home), "HIVE_NATS_URL": nats_url, "HIVE_METRICS_ADDR": "127.0.0.1:0"}
    env.pop("HIVE_DEPLOYER_ENSURE_MANAGER", None)
    proc = ServiceProcess("deployer", env, tmp_path / "logs").start()
    try:
        from hivewire.service import HiveClient

        client = HiveClient(nats_transport)
        st = await wait_for(lambda: client.request(ops.CTL_STATE, Empty(), timeout=1, agent="manager"),
                            timeout=40)
        assert st.status == "online"
        out = hive("agents", "list", "--json", env=env)
        assert out.returncode == 0, out.stderr
        agents = json.loads(out.stdout)["agents"]
        assert [(a["name"], a["runtime"]) for a in agents] == [("manager", "bwrap")]
        bad = hive("agents", "spawn", "Bad/..", env=env)
        assert bad.returncode == 2 and "bad_name" in bad.stderr
        made = hive("session", "create", "a task", "high", '{"k": [1, 2]}', env=env)
        assert made.returncode == 0, made.stderr
        sid = made.stdout.strip()
        assert json.loads(made.stderr)["metadata"] == {"k": [1, 2]}
        assert hive("session", "status", sid, env=env).stdout.strip() == "created"
        assert hive("session", "status", "00000000-0000-4000-8000-000000000000", env=env).stdout.strip() == \
            "not_found"
        assert hive("session", "output-dir", sid, env=env).stdout.strip().endswith(f"session-output/{sid}")
        mig = hive("migrate", "status", env=env)
        assert "deployer" in mig.stdout
    finally:
        proc.stop()
    assert "Traceback" not in proc.log()
