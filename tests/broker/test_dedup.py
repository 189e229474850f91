"""The send duplicate window (hive_broker.dedup): in memory, confirmed by the file,
rebuilt on start, bounded in time and count."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hive_broker import messages, store
from hive_broker.dedup import ClientIds
from hive_broker.effects import Effects
from hive_broker.service import BrokerService
from hivewire.config import ConfigError
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from hivewire.wire.broker import SendRequest

from .conftest import FAST, Bus


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = store.open_sync(tmp_path / "b.sqlite")
    c.execute("INSERT INTO known_agents(name, source, added_at) VALUES ('bob', 'deployer', 0), ('eve', 'deployer', 0)")
    return c


def _send(c: sqlite3.Connection, ids: ClientIds, to: str, body: str, cid: str, now: float = 100.0) -> str:
    c.execute("BEGIN IMMEDIATE")
    try:
        reply = messages.send(c, Effects(), ids, "alice", SendRequest(to=to, body=body, id=cid), now)
    except BaseException:
        c.execute("ROLLBACK")
        raise
    c.execute("COMMIT")
    return reply.id


def _rows(c: sqlite3.Connection) -> int:
    return int(c.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


def test_a_retry_inside_the_window_is_stored_once_and_a_changed_body_is_a_conflict(conn: sqlite3.Connection) -> None:
    ids = ClientIds(window_s=60)
    first = _send(conn, ids, "bob", "hi", "c1")
    assert _send(conn, ids, "bob", "hi", "c1", now=150) == first
    assert _rows(conn) == 1
    with pytest.raises(HiveError) as err:
        _send(conn, ids, "bob", "other", "c1", now=150)
    assert err.value.code == "conflict"
    # past the window the id is free again (documented: like JetStream's duplicate window)
    assert _send(conn, ids, "bob", "hi", "c1", now=161) != first
    assert _rows(conn) == 2


def test_the_window_is_bounded_in_count(conn: sqlite3.Connection) -> None:
    ids = ClientIds(window_s=3600, max_entries=3)
    for i in range(5):
        _send(conn, ids, "bob", f"m{i}", f"c{i}")
    assert len(ids) == 3
    _send(conn, ids, "bob", "m0", "c0")  # evicted: stored again
    _send(conn, ids, "bob", "m4", "c4")  # still remembered: not stored
    assert _rows(conn) == 6


def test_an_entry_whose_transaction_rolled_back_is_a_miss(conn: sqlite3.Connection) -> None:
    ids = ClientIds()
    conn.execute("BEGIN IMMEDIATE")
    messages.send(conn, Effects(), ids, "alice", SendRequest(to="bob", body="lost", id="c1"), 100.0)
    conn.execute("ROLLBACK")
    assert len(ids) == 1  # the map still names it...
    _send(conn, ids, "bob", "kept", "c1")  # ...but the file does not have it: stored, no conflict
    assert _rows(conn) == 1


def test_load_rebuilds_from_the_file_including_broadcasts(conn: sqlite3.Connection) -> None:
    ids = ClientIds(window_s=60)
    _send(conn, ids, "bob", "old", "c0", now=10)  # outside the window at load time
    one = _send(conn, ids, "bob", "hi", "c1", now=100)
    every = _send(conn, ids, "*", "all", "c2", now=100)
    fresh = ClientIds(window_s=60)
    assert fresh.load(conn, now=120) == 2
    assert _send(conn, fresh, "bob", "hi", "c1", now=120) == one
    assert _send(conn, fresh, "*", "all", "c2", now=120) == every
    before = _rows(conn)
    assert _send(conn, fresh, "bob", "old", "c0", now=120)  # forgotten: stored anew
    assert _rows(conn) == before + 1
    rows = fresh.lookup(conn, "alice", "c2", 120)
    assert sorted(r["recipient"] for r in rows) == ["bob", "eve", "manager"]


async def test_a_restarted_broker_still_answers_a_retry_from_the_stored_message(
    nats_transport: NatsTransport, settings: Settings, nats_url: str
) -> None:
    async def started() -> BrokerService:
        svc = BrokerService(nats_transport, settings, config=FAST)
        await svc.start()
        return svc

    svc = await started()
    t = await NatsTransport.connect(nats_url, name="dedup-test", forever=False)
    bus = Bus(t)
    try:
        await bus.register("bob", "eve")
        first = await bus.send("alice", "*", "to everyone", id="b-1")
        await svc.stop()
        svc = await started()
        again = await bus.send("alice", "*", "to everyone", id="b-1")
        assert (again.id, sorted(again.recipients)) == (first.id, sorted(first.recipients))
        assert len(await bus.recv("eve", max=10)) == 1
    finally:
        await svc.stop()
        await t.close()


def test_load_stops_at_the_first_row_older_than_the_window_even_without_an_id(conn: sqlite3.Connection) -> None:
    ids = ClientIds(window_s=60)
    _send(conn, ids, "bob", "old", "c0", now=10)
    conn.executemany(  # newer rows without client ids (CLI sends without --id)
        "INSERT INTO messages(sender, recipient, body, sent_at, kind) VALUES ('alice', 'bob', 'x', 20.0, 'message')",
        [() for _ in range(2000)],
    )
    ops = 0

    def count() -> int:
        nonlocal ops
        ops += 1
        return 0

    conn.set_progress_handler(count, 100)
    assert ClientIds(window_s=60).load(conn, now=10_000.0) == 0
    stopped, ops = ops, 0
    assert ClientIds(window_s=10**6).load(conn, now=10_000.0) == 1  # a window over everything reads every row
    conn.set_progress_handler(None, 100)
    assert stopped * 20 < ops, (stopped, ops)


def test_the_window_is_configured_from_the_environment() -> None:
    from hive_broker.config import BrokerConfig

    cfg = BrokerConfig.from_env({"HIVE_BROKER_DEDUP_WINDOW_S": "600", "HIVE_BROKER_DEDUP_MAX": "5000"})
    assert (cfg.dedup_window_s, cfg.dedup_max) == (600.0, 5000)
    # nonsense stops the broker, naming the variable and what it accepts
    with pytest.raises(ConfigError, match=r"^HIVE_BROKER_DEDUP_WINDOW_S=soon: must be a positive number$"):
        BrokerConfig.from_env({"HIVE_BROKER_DEDUP_WINDOW_S": "soon"})
    with pytest.raises(ConfigError, match=r"^HIVE_BROKER_DEDUP_MAX=-3: must be a positive integer$"):
        BrokerConfig.from_env({"HIVE_BROKER_DEDUP_MAX": "-3"})
