"""The agent's MCP `send` tool against a real broker process that stalls or is gone.

The bridge retries a send whose reply never came with the same client id, so a
broker that committed but answered too late still stores the message once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from hive_broker import store
from hive_harness.mcp_bridge import SEND_ATTEMPTS, Bridge
from hivewire import subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as w
from hivewire.wire import ops

from .conftest import ready
from support.procs import ServiceProcess, wait_for

pytestmark = pytest.mark.chaos


def stored(settings: Settings, body: str) -> list[tuple[str, str]]:
    conn = store.open_sync(settings.broker_db)
    try:
        return [(str(r[0]), r[1]) for r in conn.execute(
            "SELECT id, recipient FROM messages WHERE sender = 'alice' AND body = ?", (body,))]
    finally:
        conn.close()


async def test_a_send_whose_reply_was_late_is_retried_and_stored_once(
    broker_proc: ServiceProcess, settings: Settings, nats_url: str
) -> None:
    t = await NatsTransport.connect(nats_url, name="bridge-test", forever=False)
    client = HiveClient(t)
    broker_proc.start()
    await ready(client)
    for name in ("alice", "bob"):
        await client.request(ops.REGISTRY_UPSERT, w.RegistryRequest(name=name))
    bridge = Bridge("alice", client, send_timeout=0.5, retry_backoff=0.2)

    attempts: list[bytes] = []

    async def seen(msg: object) -> None:
        attempts.append(msg.data)  # type: ignore[attr-defined]

    await t.nc.subscribe(subjects.broker("alice", "send"), cb=seen)
    await t.flush()
    os.kill(broker_proc.pid, signal.SIGSTOP)  # the broker stalls: the first attempt gets no reply
    try:
        sending = asyncio.create_task(bridge.send(w.SendRequest(to="bob", body="late but once")))

        async def retried() -> bool:  # barrier: the first attempt timed out and the second went out
            return len(attempts) >= 2

        await wait_for(retried, timeout=10)
        assert not sending.done()  # the second is waiting
        assert attempts[0] == attempts[1]  # the same request again: same client id
    finally:
        os.kill(broker_proc.pid, signal.SIGCONT)  # it now handles both attempts, same client id
    out = json.loads(await asyncio.wait_for(sending, 10))
    rows = stored(settings, "late but once")
    assert rows == [(out["id"], "bob")]
    await t.close()


async def test_a_send_with_no_broker_gives_up_with_a_clear_error(nats_url: str) -> None:
    t = await NatsTransport.connect(nats_url, name="bridge-test", forever=False)
    bridge = Bridge("alice", HiveClient(t), send_timeout=0.5, retry_backoff=0.05)
    started = asyncio.get_running_loop().time()
    out = await bridge.send(w.SendRequest(to="bob", body="nobody home"))
    await t.close()
    assert out.startswith("error (unavailable):"), out
    assert "no service answers" in out
    # it did retry (backing off 0.05 s, then 0.1 s, ...) and it stopped: SEND_ATTEMPTS
    # quick "no responders" answers plus the backoff between them
    elapsed = asyncio.get_running_loop().time() - started
    assert sum(0.05 * a for a in range(1, SEND_ATTEMPTS)) <= elapsed < 5
