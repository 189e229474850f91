"""Sends that arrive together: past `first_turn` they are stored in two turns (hivewire
Batcher), each send still answered, stored once and woken for; and a batch
checks its recipients with one query, with the same answers as one query per send."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hive_broker import messages, store
from hive_broker.config import BrokerConfig
from hive_broker.dedup import ClientIds
from hive_broker.effects import Effects
from hive_broker.service import BrokerService
from hivewire.config import ConfigError
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from hivewire.wire.broker import SendReply, SendRequest

from .conftest import FAST, Bus, eventually


def test_first_turn_comes_from_the_environment() -> None:
    assert BrokerConfig().first_turn == 16
    assert BrokerConfig.from_env({"HIVE_BROKER_FIRST_TURN": "4"}).first_turn == 4
    with pytest.raises(ConfigError, match=r"^HIVE_BROKER_FIRST_TURN=zero: must be a positive integer$"):
        BrokerConfig.from_env({"HIVE_BROKER_FIRST_TURN": "zero"})


async def test_a_burst_bigger_than_the_first_turn_is_answered_and_stored_once(
        nats_transport: NatsTransport, settings: Settings, nats_url: str) -> None:
    svc = BrokerService(nats_transport, settings, config=dataclasses.replace(FAST, first_turn=3))
    seen: list[int] = []
    real_send = svc.send

    async def counting_send(items: list[Any]) -> list[Any]:
        seen.append(len(items))
        return await real_send(items)

    svc.send = counting_send  # type: ignore[method-assign]
    await svc.start()
    client = await NatsTransport.connect(nats_url, name="turns-test", forever=False)
    bus = Bus(client)
    try:
        await bus.listen()
        await bus.register("alice", "bob")
        replies = await asyncio.gather(*(bus.send("alice", "bob", f"m{i}", id=f"c{i}") for i in range(40)))
        assert len({r.id for r in replies}) == 40
        assert any(n > 3 for n in seen), seen  # sends did share calls
        assert sum(n > 3 for n in seen) <= seen.count(3), seen  # each bigger call followed a first turn of 3

        async def all_woken() -> bool:
            return {wk.ref for wk in bus.wakes_for("bob")} >= {r.id for r in replies}

        await eventually(all_woken)
    finally:
        await client.close()
        await svc.stop()
    conn = sqlite3.connect(settings.broker_db)
    bodies = sorted(b for (b,) in conn.execute("SELECT body FROM messages WHERE recipient = 'bob'"))
    conn.close()
    assert bodies == sorted(f"m{i}" for i in range(40))


def test_a_batch_checks_its_recipients_in_one_query(tmp_path: Path) -> None:
    conn = store.open_sync(tmp_path / "b.sqlite")
    conn.execute("INSERT INTO known_agents(name, source, added_at, removed_at) VALUES "
                 "('bob', 'deployer', 0, NULL), ('gone', 'deployer', 0, 5)")
    many = [f"a{i}" for i in range(1200)]  # more names than one IN list takes
    conn.executemany("INSERT INTO known_agents(name, source, added_at) VALUES (?, 'deployer', 0)",
                     [(n,) for n in many[::2]])
    targets = ["bob", "nobody", "gone", "manager", "operator", "bob", "Bad Name", *many]
    queries: list[str] = []
    conn.set_trace_callback(queries.append)
    conn.execute("BEGIN IMMEDIATE")
    out = messages.send_many(conn, Effects(), ClientIds(), [("alice", SendRequest(to=t, body="hi")) for t in targets],
                             100.0)
    conn.execute("COMMIT")
    conn.set_trace_callback(None)
    refused = {t: o.code for t, o in zip(targets, out, strict=True) if isinstance(o, HiveError)}
    stored = [t for t, o in zip(targets, out, strict=True) if isinstance(o, SendReply)]
    assert refused == {"nobody": "unknown_recipient", "gone": "unknown_recipient", "Bad Name": "bad_name",
                       **{n: "unknown_recipient" for n in many[1::2]}}
    assert stored == ["bob", "manager", "operator", "bob", *many[::2]]
    assert sorted(r[0] for r in conn.execute("SELECT recipient FROM messages")) == sorted(stored)
    assert sum("FROM known_agents" in q for q in queries) == 3  # 1,200 names: three chunks, not a query per send
