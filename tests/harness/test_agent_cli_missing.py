"""A harness whose agent binary is missing takes no message, says why, and resumes once it appears."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hive_harness import loop as turn_loop
from hivewire import codec, subjects
from hivewire.service import HiveClient, MicroService
from hivewire.transport import Msg
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import Presence
from hivewire.wire.common import Empty
from tests.support.procs import wait_for


def test_missing_binary_detection(tmp_path: Path) -> None:
    assert turn_loop.missing_binary(["sh", "-c", "true"]) is None
    assert turn_loop.missing_binary(["definitely-not-a-hive-binary"]) == "definitely-not-a-hive-binary"
    script = tmp_path / "agent"
    assert turn_loop.missing_binary([str(script)]) == str(script)
    script.write_text("#!/bin/sh\n")
    assert turn_loop.missing_binary([str(script)]) == str(script)  # not executable
    script.chmod(0o755)
    assert turn_loop.missing_binary([str(script)]) is None


async def test_messages_wait_unread_until_the_agent_cli_appears(
    real_broker: MicroService, harness_factory: Any, client: HiveClient, nats_transport: Any,
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_cli = cli_env["HIVE_AGENT_CMD"]
    later = tmp_path / "bin" / "claude"
    monkeypatch.setenv("HIVE_AGENT_CMD", str(later))
    monkeypatch.setattr(turn_loop, "CLI_RECHECK_S", 0.3)
    looks: list[str | None] = []  # every time the loop looked for the binary, and what it found missing
    real_missing = turn_loop.missing_binary

    def counted(argv: list[str]) -> str | None:
        looks.append(real_missing(argv))
        return looks[-1]

    monkeypatch.setattr(turn_loop, "missing_binary", counted)
    presences: list[Presence] = []

    async def on_presence(msg: Msg) -> None:
        presences.append(codec.decode(msg.data, Presence))

    sub = await nats_transport.subscribe(subjects.presence("alice"), on_presence)
    svc = await harness_factory("alice")
    sent = await client.request(ops.BROKER_SEND, wb.SendRequest(to="alice", body="hello"), agent="bob")

    async def says_why() -> bool:
        return any(p.state == "waiting" and p.reason == "agent_cli_missing" for p in presences)

    await wait_for(says_why, timeout=10)
    seen = len(looks)

    async def looked_again() -> bool:  # barrier: three more passes of the loop, each without the binary
        return len(looks) >= seen + 3 and all(m is not None for m in looks)

    await wait_for(looked_again, timeout=10)
    counts = await client.request(ops.BROKER_COUNTS, Empty(), agent="alice")
    assert counts.unread == 1  # the message was not taken, so nothing can be lost
    assert svc.loop.turns_done == 0

    later.parent.mkdir()
    later.symlink_to(real_cli)  # the operator installs the CLI

    async def handled() -> bool:
        r = await client.request(ops.MESSAGES_LIST, wb.MessagesListRequest(agent="alice"))
        return any(m.id == sent.id and m.acked_at is not None for m in r.messages)

    await wait_for(handled, timeout=60)
    assert svc.loop.cli_missing is None
    await sub.unsubscribe()
