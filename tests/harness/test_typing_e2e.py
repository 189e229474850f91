"""The real claude CLI with --include-partial-messages against the simulator: its text streams on
hive.agent.<a>.typing before the final assistant_text, which alone is stored; and a new harness
instance announces its status (issue 23)."""

from __future__ import annotations

from typing import Any

import pytest

from hive_harness.simmodel import SimModel, Step
from hivewire import codec, subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.transport import Msg
from hivewire.wire import ops
from hivewire.wire.agent import HistoryRequest, LiveEvent, Typing
from hivewire.wire.broker import SendRequest
from tests.support.procs import wait_for

pytestmark = pytest.mark.e2e
ANSWER = "Streaming along: the build is green and 42 tests passed."


async def test_partial_text_streams_on_typing_and_only_the_final_text_is_stored(
        broker: Any, sim: SimModel, harness_factory: Any, client: HiveClient, nats_transport: NatsTransport) -> None:
    sim.script.add(Step(text=ANSWER, match="stream to me"))
    seen: list[tuple[str, Any]] = []  # one connection, both subjects: the order they arrive in

    async def on_typing(msg: Msg) -> None:
        seen.append(("typing", codec.decode(msg.data, Typing)))

    async def on_event(msg: Msg) -> None:
        seen.append(("event", codec.decode(msg.data, LiveEvent)))

    subs = [await nats_transport.subscribe(subjects.typing("alice"), on_typing),
            await nats_transport.subscribe(subjects.events("alice"), on_event)]
    await nats_transport.flush()
    alice = await harness_factory("alice")
    await client.request(ops.BROKER_SEND, SendRequest(to="alice", body="stream to me"), agent="operator")

    async def answered() -> bool:
        return any(k == "event" and e.kind == "turn_end" for k, e in seen) and any(
            k == "event" and e.kind == "assistant_text" and e.payload.get("text") == ANSWER for k, e in seen)

    await wait_for(answered, timeout=90)
    for s in subs:
        await s.unsubscribe()
    typed = [t for k, t in seen if k == "typing"]
    final = next(i for i, (k, e) in enumerate(seen) if k == "event" and e.kind == "assistant_text")
    assert "".join(t.text for t in typed) == ANSWER  # the simulator streams it as one delta
    assert all(k == "typing" or e.kind != "assistant_text" for k, e in seen[:final])
    assert max(i for i, (k, _) in enumerate(seen) if k == "typing") < final  # typing first, then the final text
    assert {t.instance for t in typed} == {alice.instance}
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=500), agent="alice")
    assert [e.payload["text"] for e in hist.events if e.kind == "assistant_text"] == [ANSWER]
    assert all(e.kind != "text_delta" for e in hist.events)  # never stored


async def test_a_new_instance_announces_its_status(broker: Any, sim: SimModel, harness_factory: Any,
                                                   client: HiveClient) -> None:
    first = await harness_factory("alice")
    await harness_factory.stop(first)
    second = await harness_factory("alice")
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=50), agent="alice")
    announced = [e.payload for e in hist.events if e.kind == "status_changed"]  # newest first
    assert announced[0]["instance"] == second.instance and announced[0]["reason"] == "harness_started"
    assert announced[0]["status"] == "online"
    assert announced[1]["instance"] == first.instance
