"""kill -9 of the ledger's owner (a real broker process) while turn rows pour in: after a restart
every turn is in the ledger exactly once (JetStream kept what arrived meanwhile; the turn id key
drops what was redelivered because its ack died with the process)."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from hive_broker import ledger
from hivewire import codec, subjects
from hivewire.db import connect
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as w
from hivewire.wire import ops
from hivewire.wire.agent import TurnStats

from .conftest import ready
from support.procs import ServiceProcess, wait_for

pytestmark = pytest.mark.chaos


async def test_kill9_of_the_ledger_owner_loses_no_turn_and_counts_none_twice(
        broker_proc: ServiceProcess, settings: Settings, nats_url: str) -> None:
    t = await NatsTransport.connect(nats_url, name="ledger-crash-test", forever=False)
    try:
        await _run(t, broker_proc, settings)
    finally:
        await t.close()


async def _run(t: NatsTransport, broker_proc: ServiceProcess, settings: Settings) -> None:
    js = t.nc.jetstream()
    try:
        await js.delete_stream(subjects.LEDGER_STREAM)  # the session's server may hold an earlier test's
    except Exception:
        pass
    client = HiveClient(t)
    broker_proc.start()
    await ready(client)

    async def ingested() -> int:
        return (await client.request(ops.LEDGER_COSTS, w.CostsRequest(), timeout=2.0)).turns

    await wait_for(lambda: _stream_up(js), timeout=20)
    agents = [f"agent-{i}" for i in range(20)]
    per_agent = 40
    sent: dict[str, tuple[str, float]] = {}  # turn id -> (agent, dollars)

    async def harness(agent: str) -> None:
        for _ in range(per_agent):
            row = TurnStats(agent=agent, model="haiku", wake_from="bob", result_kind="ok", started_at=0.0,
                            ended_at=1.0, duration_ms=0, cost_usd=round(random.uniform(0.001, 0.1), 6),
                            input_tokens=random.randint(1, 1000), turn_id=uuid.uuid4().hex)
            await js.publish(ops.LEDGER.subject_for(agent=agent), codec.encode(row),
                             headers={"Nats-Msg-Id": row.turn_id})
            sent[row.turn_id] = (agent, row.cost_usd)
            await asyncio.sleep(random.random() * 0.004)

    burst = [asyncio.create_task(harness(a)) for a in agents]
    await wait_for(lambda: _at_least(ingested, 100), timeout=30, interval=0.01)
    broker_proc.kill9()
    killed_at = len(sent)
    broker_proc.start()
    await asyncio.gather(*burst)
    await ready(client)
    total = len(agents) * per_agent
    await wait_for(lambda: _at_least(ingested, total), timeout=60)
    broker_proc.stop()

    assert killed_at < total  # the kill really hit mid-traffic
    conn = connect(settings.home / "ledger.sqlite")
    ledger.MIGRATIONS.up(conn)
    rows = conn.execute("SELECT turn_id, agent, cost_usd FROM turns").fetchall()
    conn.close()
    assert len(rows) == total
    assert {r["turn_id"]: (r["agent"], r["cost_usd"]) for r in rows} == sent


async def _stream_up(js: object) -> bool:
    await js.stream_info(subjects.LEDGER_STREAM)  # type: ignore[attr-defined]
    return True


async def _at_least(fn: object, n: int) -> bool:
    return await fn() >= n  # type: ignore[operator, no-any-return]
