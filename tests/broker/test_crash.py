"""kill -9 of a real broker process: acknowledged sends are durable and stored once."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from hive_broker import store
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as w
from hivewire.wire import ops

from .conftest import Bus
from .conftest import ready as _ready
from support.procs import ServiceProcess, wait_for

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("sync", ["normal", "full"])
async def test_kill9_during_concurrent_sends(
    broker_proc: ServiceProcess, settings: Settings, nats_url: str, sync: str
) -> None:
    t = await NatsTransport.connect(nats_url, name="crash-test", forever=False)
    client = HiveClient(t)
    broker_proc.env["HIVE_BROKER_SYNC"] = sync
    broker_proc.start()
    await _ready(client)
    info = json.loads((await t.request("$SRV.INFO.hive-broker", b"", timeout=2.0)).data)
    assert info["metadata"]["sync"] == sync  # the process under test runs in that mode
    senders = [f"agent-{i}" for i in range(16)]
    per_sender = 25
    acked: dict[tuple[str, str], str] = {}
    retries = 0

    async def run(sender: str) -> None:
        nonlocal retries
        for i in range(per_sender):
            cid = f"{sender}-{i}"
            while True:
                try:
                    req = w.SendRequest(to="manager", body=f"payload {cid}", id=cid)
                    r = await client.request(ops.BROKER_SEND, req, timeout=1.0, agent=sender)
                    acked[(sender, cid)] = r.id
                    break
                except HiveError as err:
                    assert err.code in ("timeout", "unavailable"), err
                    retries += 1
                    await asyncio.sleep(0.05)
            await asyncio.sleep(random.random() * 0.01)

    burst = [asyncio.create_task(run(s)) for s in senders]
    await wait_for(lambda: _async(len(acked) >= 60), timeout=20, interval=0.005)
    broker_proc.kill9()
    killed_at = len(acked)
    await asyncio.sleep(0.3)
    broker_proc.start()
    await asyncio.gather(*burst)
    await t.close()
    broker_proc.stop()

    assert killed_at < len(senders) * per_sender  # the kill really hit mid-burst
    assert retries > 0
    conn = store.open_sync(settings.broker_db)
    rows = conn.execute("SELECT id, sender, client_id FROM messages WHERE recipient = 'manager'").fetchall()
    conn.close()
    stored: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        stored.setdefault((r["sender"], r["client_id"]), []).append(str(r["id"]))
    assert len(acked) == len(senders) * per_sender
    for key, mid in acked.items():
        assert stored.get(key) == [mid], key  # present, exactly once, under the id we were told
    assert len(rows) == len(acked)


async def _async(v: object) -> object:
    return v


async def test_recv_crash_restart_gets_message_back(
    broker_proc: ServiceProcess, nats_url: str
) -> None:
    t = await NatsTransport.connect(nats_url, name="harness-sim", forever=False)
    bus = Bus(t)
    broker_proc.start()
    await _ready(bus.client)
    await bus.register("bob")
    await bus.presence("bob", "harness-1")
    sent = await bus.send("alice", "bob", "work item")
    got = await bus.recv("bob", instance="harness-1")
    assert [(m.id, m.redelivered) for m in got] == [(sent.id, False)]
    # the harness dies mid-turn (never acks) -- and the broker is killed too, for good measure
    broker_proc.kill9()
    broker_proc.start()
    await _ready(bus.client)
    assert await bus.recv("bob", instance="harness-1") == []  # still in flight, not lost
    await bus.presence("bob", "harness-2")  # the restarted harness announces itself

    async def back() -> list[w.Message]:
        return await bus.recv("bob", instance="harness-2")

    again = await wait_for(back, timeout=10)
    assert [(m.id, m.body, m.redelivered) for m in again] == [(sent.id, "work item", True)]
    assert await bus.ack("bob", [sent.id]) == 1
    await t.close()
