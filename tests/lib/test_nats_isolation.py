"""Each test has its own NATS account on the session's server (tests/conftest.py `nats_url`).

A service left running by another test (here: one started in another account, as a
leaked one would be) can neither answer this test's requests nor see its messages,
even on the very same subjects and queue group.
"""

from __future__ import annotations

import nats

from hivewire.natsd import NatsServer
from tests.conftest import Accounts
from tests.support.procs import wait_for


async def test_a_service_of_another_test_cannot_answer_or_overhear(
        nats_url: str, nats_server: NatsServer, nats_accounts: Accounts) -> None:
    user, password = nats_accounts.add(nats_server)  # what the earlier test's account was
    other = await nats.connect(f"nats://{user}:{password}@{nats_server.host}:{nats_server.port}")
    mine = await nats.connect(nats_url)
    try:
        overheard: list[str] = []

        async def leaked(msg: nats.aio.msg.Msg) -> None:
            overheard.append(msg.subject)
            if msg.reply:
                await msg.respond(b"stolen")

        async def ours(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b"ours")

        for sub in ("hive.broker.*.send", "hive.agent.>"):
            await other.subscribe(sub, queue="q" if sub.endswith("send") else "", cb=leaked)
        await other.flush()
        await mine.subscribe("hive.broker.*.send", queue="q", cb=ours)
        await mine.flush()
        answers = [(await mine.request("hive.broker.alice.send", b"{}", timeout=2)).data for _ in range(20)]
        assert answers == [b"ours"] * 20
        # events too: the other account's subscriber saw none of ours (barrier: its own arrives)
        await mine.publish("hive.agent.alice.events", b"{}")
        await mine.flush()
        await other.publish("hive.agent.other.events", b"{}")

        async def own_seen() -> bool:
            return "hive.agent.other.events" in overheard

        await wait_for(own_seen, timeout=5)
        assert overheard == ["hive.agent.other.events"]
    finally:
        await mine.close()
        await other.close()
