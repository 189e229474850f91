"""The harness's event bus: group commit, ordering, durability, and coalesced typing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hive_harness.bus import TYPING_FLUSH_S, Bus
from hive_harness.loop import TurnLoop
from hive_harness.store import EventStore
from hive_harness.streamjson import StreamParser
from hivewire import codec
from hivewire.wire import ops
from hivewire.wire.agent import LiveEvent, Typing
from hivewire.wire.op import Op

DATA = Path(__file__).resolve().parent / "data"


class Sink:
    """What the bus published: (subject, decoded) in order, and how many publish_many calls."""

    def __init__(self) -> None:
        self.events: list[LiveEvent] = []
        self.typing: list[Typing] = []
        self.batches = 0

    async def emit(self, op: Op[Any, None], payload: Any, **params: str) -> None:
        assert params == {"agent": "alice"}
        if op is ops.TYPING:
            self.typing.append(payload)
        else:
            assert op is ops.EVENTS
            self.events.append(codec.decode(codec.encode(payload), LiveEvent))

    async def publish_many(self, msgs: Sequence[tuple[str, bytes]]) -> None:
        self.batches += 1
        for subject, data in msgs:
            assert subject == ops.EVENTS.subject_for(agent="alice")
            self.events.append(codec.decode(data, LiveEvent))


def rows(db: Path) -> list[tuple[int, str, dict[str, Any]]]:
    conn = sqlite3.connect(db)
    try:
        return [(r[0], r[1], json.loads(r[2])) for r in conn.execute("SELECT id, kind, payload_json FROM events "
                                                                     "ORDER BY id")]
    finally:
        conn.close()


async def bus_for(tmp_path: Path, sink: Sink) -> tuple[Bus, EventStore]:
    store = EventStore(tmp_path / "events.sqlite")
    assert await store.open()
    bus = Bus("alice", tmp_path, store, sink.emit, None, publish_many=sink.publish_many)
    await bus.init_seq()
    return bus, store


async def test_a_turns_stream_is_one_transaction_and_turn_end_covers_it(tmp_path: Path) -> None:
    sink = Sink()
    bus, store = await bus_for(tmp_path, sink)
    writes = 0
    real = store.append_many

    async def counted(evs: list[LiveEvent]) -> int:
        nonlocal writes
        writes += 1
        return await real(evs)

    store.append_many = counted  # type: ignore[method-assign]
    try:
        for i in range(10):  # the CLI's stream: queued, not each awaited to disk
            await bus.emit("assistant_text", text=f"line {i}")
        ev = await bus.emit("turn_end", result_kind="ok")
        # returned: it and everything before it are committed and published, in order, once
        assert ev is not None and ev.id == 11
        assert [r[0] for r in rows(tmp_path / "events.sqlite")] == list(range(1, 12))
        assert [e.id for e in sink.events] == list(range(1, 12))
        assert [e.payload.get("text") for e in sink.events[:10]] == [f"line {i}" for i in range(10)]
        assert writes == 1 and sink.batches == 1  # group commit: one transaction, one publish_many
    finally:
        await store.close()


async def test_flush_stores_what_is_queued_and_ids_continue_after_a_restart(tmp_path: Path) -> None:
    sink = Sink()
    bus, store = await bus_for(tmp_path, sink)
    await bus.emit("note", text="first instance")
    await store.close()

    sink2 = Sink()
    bus2, store2 = await bus_for(tmp_path, sink2)  # a new instance on the same file
    try:
        await bus2.emit("tool_use", name="Bash", input={"command": "ls"})
        await bus2.flush()
        assert [(r[0], r[1]) for r in rows(tmp_path / "events.sqlite")] == [(1, "note"), (2, "tool_use")]
        assert [e.id for e in sink2.events] == [2]
    finally:
        await store2.close()


async def test_ids_taken_by_another_writer_are_renumbered_not_lost(tmp_path: Path) -> None:
    sink = Sink()
    bus, store = await bus_for(tmp_path, sink)
    try:
        await bus.emit("note", text="mine 1")
        other = sqlite3.connect(tmp_path / "events.sqlite")  # e.g. an overlapping instance
        other.execute("INSERT INTO events(id, ts, kind, payload_json) VALUES (2, 0, 'note', '{\"text\": \"theirs\"}')")
        other.commit()
        other.close()
        await bus.emit("note", text="mine 2")
        await bus.emit("note", text="mine 3")
        stored = rows(tmp_path / "events.sqlite")
        assert [(r[0], r[2]["text"]) for r in stored] == [(1, "mine 1"), (2, "theirs"), (3, "mine 2"), (4, "mine 3")]
        assert [(e.id, e.payload["text"]) for e in sink.events] == [(1, "mine 1"), (3, "mine 2"), (4, "mine 3")]
    finally:
        await store.close()


async def test_broadcast_only_without_a_file_still_publishes_in_order(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = EventStore(blocker / "events.sqlite")
    assert await store.open() is False
    sink = Sink()
    bus = Bus("alice", tmp_path, store, sink.emit, None, publish_many=sink.publish_many)
    await bus.emit("thinking", text="a")
    await bus.emit("note", text="b")
    assert [(e.id, e.kind) for e in sink.events] == [(1, "thinking"), (2, "note")]


async def test_text_deltas_are_coalesced_published_and_never_stored(tmp_path: Path) -> None:
    sink = Sink()
    bus, store = await bus_for(tmp_path, sink)
    words = [f"w{i} " for i in range(200)]
    started = time.monotonic()
    try:
        for burst in range(10):  # 10 bursts of 20 tokens, a little apart: as a model streams
            for w in words[burst * 20:(burst + 1) * 20]:
                await bus.emit("text_delta", block="msg_1:0", text=w)
            await asyncio.sleep(0.03)
        await bus.emit("assistant_text", text="".join(words))  # the final text: sends what is left first
        elapsed = time.monotonic() - started
        await asyncio.sleep(0)
        await bus.emit("text_delta", block="msg_1:0", text="late")  # after the final text: dropped
        await asyncio.sleep(2 * TYPING_FLUSH_S)
        pubs = sink.typing
        assert "".join(p.text for p in pubs) == "".join(words)
        assert [p.offset for p in pubs] == [sum(len(q.text) for q in pubs[:i]) for i in range(len(pubs))]
        assert {p.block for p in pubs} == {"msg_1:0"}
        assert len(pubs) < len(words)
        assert len(pubs) <= 1 + elapsed / TYPING_FLUSH_S  # never more often than every 50 ms
        assert [r[1] for r in rows(tmp_path / "events.sqlite")] == ["assistant_text"]  # the deltas: not stored
        assert [e.kind for e in sink.events] == ["assistant_text"]
    finally:
        await store.close()


async def test_partial_messages_of_the_real_cli_reach_typing_and_store_the_final_text(tmp_path: Path) -> None:
    """tests/harness/data/claude-2.1.332-partial-messages.jsonl: claude 2.1.332 `--include-partial-messages`
    against the simulator, through the parser and the turn loop's own event path."""
    sink = Sink()
    bus, store = await bus_for(tmp_path, sink)
    parser = StreamParser()
    holder = type("L", (), {"bus": bus})()
    try:
        for line in (DATA / "claude-2.1.332-partial-messages.jsonl").read_text().splitlines():
            drafts = parser.feed(line)
            if drafts:
                await TurnLoop._on_events(holder, drafts)  # type: ignore[arg-type]
        await bus.flush()
        await asyncio.sleep(2 * TYPING_FLUSH_S)
        assert [p.text for p in sink.typing] == ["ok, partial"]
        assert sink.typing[0].block.endswith(":0") and len(sink.typing[0].block) > 2
        assert [(r[1], r[2].get("text")) for r in rows(tmp_path / "events.sqlite")] == [
            ("assistant_text", "ok, partial")]
        assert parser.summary.got_result and parser.summary.ctx is not None
    finally:
        await store.close()


def test_parser_text_deltas_only_for_the_main_agents_text() -> None:
    def se(event: dict[str, Any], **extra: Any) -> str:
        return json.dumps({"type": "stream_event", "event": event, "session_id": "s", **extra})

    p = StreamParser()
    # claude 2.1.197 has no api_message_id: the block key comes from message_start
    assert p.feed(se({"type": "message_start", "message": {"id": "msg_a", "content": []}})) == []
    assert p.feed(se({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}})) == [
        ("text_delta", {"block": "msg_a:1", "text": "hi"})]
    assert p.feed(se({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}},
                     api_message_id="msg_b")) == [("text_delta", {"block": "msg_b:0", "text": "x"})]
    # a tool's input, thinking, a sub-agent's text and odd shapes: nothing
    assert p.feed(se({"type": "content_block_delta", "index": 0,
                      "delta": {"type": "input_json_delta", "partial_json": "{"}})) == []
    assert p.feed(se({"type": "content_block_delta", "index": 0,
                      "delta": {"type": "thinking_delta", "thinking": "hm"}})) == []
    assert p.feed(se({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "sub"}},
                     parent_tool_use_id="toolu_1")) == []
    assert p.feed(se({"type": "content_block_delta", "delta": None})) == []
    assert p.feed(json.dumps({"type": "stream_event", "event": "junk"})) == []
