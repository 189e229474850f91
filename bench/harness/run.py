"""Harness event ingest: a stream-json burst parsed, persisted and published
through the harness's real code path, against raw inserts into the same file.

    python bench/harness/run.py [--events 50000]

Our path: `StreamParser.feed(line)` -> the turn loop's `_on_events` ->
`Bus.emit` (group commit: what queued while the previous batch was written goes
into events.sqlite as one transaction, WAL, synchronous=NORMAL, hivewire's
batching writer, then out with one `publish_many` on `hive.agent.<agent>.events`
to a real nats-server, where a subscriber counts what arrives); the clock stops
once `Bus.flush()` says every event is committed and published. Baseline, in
the same run: the same rows inserted straight into the same sqlite file with
the stdlib, one autocommit INSERT each (what the harness did before batching),
and, for reference, all rows in one transaction.

Also measured: live typing. A turn streaming `--include-partial-messages`
text deltas (`stream_event` lines, one every `--delta-gap-ms`) through the same
path; the figures say how many `hive.agent.<agent>.typing` publications a
second that made (coalesced, at most ~20/s) and how many events it stored
(only the final `assistant_text`).
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
from hivewire.service import HiveClient
from hivewire.wire.agent import Typing

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

    bus = Bus(AGENT, db.parent, store, HiveClient(t).emit, None, publish_many=t.publish_many)  # as the service wires it
    parser = StreamParser()
    on_events = TurnLoop._on_events  # the loop's own method; only `self.bus` is used
    holder = type("L", (), {"bus": bus})()
    started = time.perf_counter()
    for line in lines:
        drafts = parser.feed(line)
        if drafts:
            await on_events(holder, drafts)  # type: ignore[arg-type]
    await bus.flush()  # every event stored (committed) and published
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


def delta_lines(n: int) -> list[str]:
    """A streamed answer: message_start, n text deltas, then the whole text as the `assistant` event."""
    def se(event: dict[str, object]) -> str:
        return json.dumps({"type": "stream_event", "event": event, "session_id": "s", "parent_tool_use_id": None,
                           "api_message_id": "msg_bench"})
    words = [f"w{i} " for i in range(n)]
    return [se({"type": "message_start", "message": {"id": "msg_bench", "content": []}}),
            se({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            *(se({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})
              for w in words),
            json.dumps({"type": "assistant", "message": {"id": "msg_bench", "model": "sim", "content": [
                {"type": "text", "text": "".join(words)}]}, "session_id": "s"}),
            se({"type": "content_block_stop", "index": 0})]


async def typing(url: str, db: Path, deltas: int, gap_s: float) -> dict[str, float]:
    """One streamed turn through the harness path: typing publications per second, events stored."""
    t = await NatsTransport.connect(url, name="bench-typing", forever=False)
    got: list[str] = []

    async def on_typing(msg: object) -> None:
        got.append(codec.decode(msg.data, Typing).text)  # type: ignore[attr-defined]

    sub = await t.subscribe(subjects.typing(AGENT), on_typing)
    await t.flush()
    store = EventStore(db)
    assert await store.open()
    before = await store.max_id()

    bus = Bus(AGENT, db.parent, store, HiveClient(t).emit, None, publish_many=t.publish_many)
    await bus.init_seq()
    parser = StreamParser()
    holder = type("L", (), {"bus": bus})()
    lines = delta_lines(deltas)
    started = time.perf_counter()
    for line in lines:
        drafts = parser.feed(line)
        if drafts:
            await TurnLoop._on_events(holder, drafts)  # type: ignore[arg-type]
        await asyncio.sleep(gap_s)
    await bus.flush()
    streamed = time.perf_counter() - started
    await t.flush()
    await asyncio.sleep(0.2)
    stored = await store.max_id() - before
    await store.close()
    await sub.unsubscribe()
    await t.close()
    text_ok = "".join(got) == "".join(f"w{i} " for i in range(deltas))
    return {"deltas": deltas, "seconds": round(streamed, 2), "publications": len(got),
            "publications_per_s": round(len(got) / streamed, 1), "deltas_per_s": round(deltas / streamed),
            "events_stored": stored, "text_complete": text_ok}


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
        ty = await typing(server.url, tmp / "state" / "typing.sqlite", args.deltas, args.delta_gap_ms / 1000)
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
    print(f"typing: {ty['deltas']} text deltas in {ty['seconds']}s ({ty['deltas_per_s']}/s) -> "
          f"{ty['publications']} publications ({ty['publications_per_s']}/s), {ty['events_stored']} event(s) "
          f"stored, text complete: {ty['text_complete']}")
    lost = n - min(stored, published)
    emit([row(f"harness ingest ({n} stream-json events)", ratio, "raw autocommit INSERTs, same file", "higher",
              events_per_s=round(n / t_ours), raw_per_s=round(n / t_raw), raw_one_txn_per_s=round(n / t_raw1),
              stored=stored, published=published, lost=lost,
              typing_publications_per_s=ty["publications_per_s"], typing_deltas_per_s=ty["deltas_per_s"])])
    return 1 if lost or not ty["text_complete"] or ty["events_stored"] != 1 else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--deltas", type=int, default=2_000, help="text deltas in the typing turn")
    p.add_argument("--delta-gap-ms", type=float, default=1.0, help="pause between two stream-json lines")
    sys.exit(asyncio.run(main(p.parse_args())))
