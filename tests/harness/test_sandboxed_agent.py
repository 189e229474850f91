"""A normal agent in its sandbox: the real CLI talks to the model, runs Bash in its state dir, uses its
hive tools, and sees none of the harness's secrets. (The hostile side is tests/security.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hive_harness.simmodel import SimModel, Step
from hivewire.service import HiveClient
from hivewire.wire import ops
from hivewire.wire.broker import SendRequest
from tests.support.procs import wait_for

pytestmark = pytest.mark.e2e


async def test_an_agent_runs_bash_in_its_state_dir_and_its_tools_in_the_harness(
        broker: Any, sim: SimModel, harness_factory: Any, client: HiveClient, hive_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_ALLOWED_TOOLS", "Bash")
    monkeypatch.setenv("HIVE_OPERATOR_TOKEN", "operator-token-secret")  # in the harness's env, never the CLI's
    script = ('pwd > where.txt; id -u >> where.txt; echo "token=${HIVE_OPERATOR_TOKEN:-none}" >> where.txt; '
              f'ls -A {hive_home} {hive_home}/agents >> where.txt 2>&1')
    sim.script.add(Step(kind="tool_use", tool_name="Bash", tool_input={"command": script}, match="run the check"),
                   Step(kind="tool_use", tool_name="mcp__hive__send", tool_input={"to": "bob", "body": "checked"},
                        match="where.txt"))
    (hive_home / "agents/bob/creds").mkdir(parents=True)
    (hive_home / "operator.token").write_text("operator-token-secret\n")
    alice = await harness_factory("alice")
    assert alice.cli.sandbox.confined
    await client.request(ops.BROKER_SEND, SendRequest(to="alice", body="please run the check"), agent="operator")

    async def bob_heard() -> bool:
        return any(m.sender == "alice" and m.body == "checked" for m in await broker.inbox("bob"))

    await wait_for(bob_heard, timeout=90)
    state = hive_home / "agents/alice/state"
    out = (await asyncio.to_thread((state / "where.txt").read_text)).splitlines()
    assert out[0] == str(state)  # Bash ran in its own state dir, which it may write
    assert out[1] == "1000"  # as the sandbox's user, not the harness's
    assert out[2] == "token=none"
    # of HIVE_HOME it sees only the way to its own dirs: no other agent, no token, no broker.sqlite
    seen = {line for line in out[3:] if line and not line.endswith(":")}
    assert seen == {"agents", "alice"}, out
