"""Harness event ingest: a stream-json burst parsed, persisted and published
through the harness's real code path, against raw inserts into the same file.

    python bench/harness/run.py [--events 50000]

Our path: `StreamParser.feed(line)` -> the turn loop's `_on_events` ->
`Bus.emit` -> `EventStore.append` (events.sqlite, WAL, synchronous=NORMAL,
hivewire's batching writer) + publish on `hive.agent.<agent>.events` to a real
nats-server, where a subscriber counts what arrives. Baseline, in the same
run: the same rows inserted straight into the same sqlite file with the stdlib
(one autocommit INSERT each: the same transaction granularity as the harness,
which awaits every event), and, for reference, all rows in one transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runlib import emit, row

from hive_harness.bus import Bus
from hive_harness.loop import TurnLoop
from hive_harness.store import EventStore
from hive_harness.streamjson import StreamParser
from hivewire import codec, subjects
from hivewire.nats_transport import NatsTransport
from hivewire.natsd import NatsServer

AGENT = "bench-ingest"


def burst(n: int) -> list[str]:
    """n stream-json lines, each yielding exactly one LiveEvent (text, tool_use, tool_result, thinking)."""
    lines = []
    for i in range(n):
        k = i % 4
        if k == 0:
            ev = {"type": "assistant", "message": {"model": "sim", "content": [{"type": "text", "text": f"step {i}: "
                  "looking at the failing test and the module it imports"}], "usage": {"input_tokens": 10 + i,
                  "output_tokens": 5}}, "session_id": "s"}
        elif k == 1:
            ev = {"type": "assistant", "message": {"model": "sim", "content": [{"type": "tool_use", "id": f"t{i}",
                  "name": "Bash", "input": {"command": f"pytest -q tests/test_{i}.py"}}]}, "session_id": "s"}
        elif k == 2:
            ev = {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": f"t{i - 1}",
                  "content": "1 passed in 0.01s\n" * 3}]}, "session_id": "s"}
        else:
            ev = {"type": "assistant", "message": {"model": "sim", "content": [{"type": "thinking",
                  "thinking": f"thought {i}"}]}, "session_id": "s"}
        lines.append(json.dumps(ev))
    return lines


async def ours(lines: list[str], db: Path, url: str) -> tuple[float, int, int]:
    t = await NatsTransport.connect(url, name="bench-ingest", forever=False)
    sub_t = await NatsTransport.connect(url, name="bench-ingest-sub", forever=False)
    got = 0

    async def on_ev(_msg: object) -> None:
        nonlocal got
        got += 1

    sub = await sub_t.subscribe(subjects.events(AGENT), on_ev)
    await sub_t.flush()
    store = EventStore(db)
    assert await store.open()

    async def publish(subject: str, obj: object) -> None:
        await t.publish(subject, codec.encode(obj))

    bus = Bus(AGENT, db.parent, store, publish, None)
    parser = StreamParser()
    on_events = TurnLoop._on_events  # the loop's own method; only `self.bus` is used
    holder = type("L", (), {"bus": bus})()
    started = time.perf_counter()
    for line in lines:
        drafts = parser.feed(line)
        if drafts:
            await on_events(holder, drafts)  # type: ignore[arg-type]
    await t.flush()
    elapsed = time.perf_counter() - started
    deadline = time.monotonic() + 20
    while got < len(lines) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stored = await store.max_id()
    await store.close()
    await sub.unsubscribe()
    await t.close()
    await sub_t.close()
    return elapsed, stored, got


def raw(rows: list[tuple[float, str, str]], db: Path, one_txn: bool) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    if one_txn:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO events(ts, kind, payload_json) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
    else:
        for r in rows:
            conn.execute("INSERT INTO events(ts, kind, payload_json) VALUES (?, ?, ?)", r)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="hive-bench-ingest-"))
    server = NatsServer(tmp / "nats").start()
    try:
        lines = burst(args.events)
        db = tmp / "state" / "events.sqlite"
        db.parent.mkdir()
        t_ours, stored, published = await ours(lines, db, server.url)
    finally:
        server.stop()
    # the same rows, raw, into the same file (appended after ours)
    conn = sqlite3.connect(db)
    rows = [(r[0], r[1], r[2]) for r in conn.execute("SELECT ts, kind, payload_json FROM events ORDER BY id")]
    conn.close()
    t_raw = raw(rows, db, one_txn=False)
    t_raw1 = raw(rows, db, one_txn=True)
    n = args.events
    print(f"events={n}  (stream-json lines -> LiveEvents, events.sqlite synchronous=NORMAL)")
    print(f"harness path (parse + persist + publish): {n / t_ours:9.0f} events/s  ({t_ours:.2f}s) "
          f"stored={stored} published+received={published}")
    print(f"raw autocommit inserts, same file:        {n / t_raw:9.0f} rows/s    ({t_raw:.2f}s)")
    print(f"raw, one transaction, same file:          {n / t_raw1:9.0f} rows/s    ({t_raw1:.2f}s)")
    ratio = (n / t_ours) / (n / t_raw)
    print(f"ratio harness/raw autocommit: {ratio:.2f}")
    lost = n - min(stored, published)
    emit([row(f"harness ingest ({n} stream-json events)", ratio, "raw autocommit INSERTs, same file", "higher",
              events_per_s=round(n / t_ours), raw_per_s=round(n / t_raw), raw_one_txn_per_s=round(n / t_raw1),
              stored=stored, published=published, lost=lost)])
    return 1 if lost else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=50_000)
    sys.exit(asyncio.run(main(p.parse_args())))
