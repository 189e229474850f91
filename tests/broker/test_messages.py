"""send / recv / ack over a real nats-server: durability rules, errors, wakes, redelivery."""

from __future__ import annotations

import asyncio

import pytest

from hive_broker.service import BrokerService
from hivewire.errors import HiveError
from hivewire.wire import broker as w
from hivewire.wire import ops

from .conftest import Bus, eventually


async def test_send_recv_ack_roundtrip(bus: Bus) -> None:
    sent = await bus.send("alice", "bob", "hello bob", in_reply_to="7")
    assert sent.recipients == ["bob"]
    got = await bus.recv("bob")
    assert [(m.id, m.sender, m.to, m.body, m.in_reply_to, m.redelivered) for m in got] == [
        (sent.id, "alice", "bob", "hello bob", "7", False)
    ]
    assert got[0].sent_at == sent.sent_at
    # in flight: not handed out again
    assert await bus.recv("bob") == []
    assert await bus.ack("bob", [sent.id]) == 1
    assert await bus.ack("bob", [sent.id]) == 0  # already acked
    listed = await bus.operator(ops.MESSAGES_LIST, w.MessagesListRequest(agent="bob"))
    assert listed.messages[0].acked_at is not None


async def test_wake_and_changed_are_published(bus: Bus) -> None:
    sent = await bus.send("alice", "bob", "ping")
    await eventually(lambda: _async(bus.wakes_for("bob")))
    assert bus.wakes_for("bob")[0] == w.Wake(reason="message", ref=sent.id)
    await eventually(lambda: _async([c for c in bus.changes if c.table == "messages" and c.id == sent.id]))


async def _async(value: object) -> object:
    return value


async def test_ack_only_own_messages(bus: Bus) -> None:
    sent = await bus.send("alice", "bob", "for bob")
    assert await bus.ack("alice", [sent.id]) == 0
    assert await bus.ack("bob", [sent.id, "999999"]) == 1
    with pytest.raises(HiveError) as e:
        await bus.ack("bob", ["not-an-id"])
    assert e.value.code == "bad_request"


async def test_idempotent_client_id(bus: Bus) -> None:
    a = await bus.send("alice", "bob", "once", id="c-1")
    b = await bus.send("alice", "bob", "once", id="c-1")
    assert a.id == b.id and a.sent_at == b.sent_at
    # another sender may use the same client id
    c = await bus.send("bob", "alice", "once", id="c-1")
    assert c.id != a.id
    assert len(await bus.recv("bob", max=10)) == 1
    with pytest.raises(HiveError) as e:
        await bus.send("alice", "bob", "different body", id="c-1")
    assert e.value.code == "conflict"


async def test_a_burst_of_sends_shares_commits_and_a_refused_one_costs_the_others_nothing(bus: Bus) -> None:
    from prometheus_client import REGISTRY

    def commits() -> tuple[float, float]:
        return (REGISTRY.get_sample_value("hive_broker_commit_batch_size_count") or 0.0,
                REGISTRY.get_sample_value("hive_broker_commit_batch_size_sum") or 0.0)

    async def one(i: int) -> w.SendReply | HiveError:
        try:  # every 4th goes to nobody; pairs share a client id (a retry racing its original)
            return await bus.send("alice", "nobody" if i % 4 == 0 else "bob", f"burst {i // 2}", id=f"burst-{i // 2}")
        except HiveError as err:
            return err

    n0, s0 = commits()
    results = await asyncio.gather(*(one(i) for i in range(60)))
    n1, s1 = commits()
    refused = [r for r in results if isinstance(r, HiveError)]
    assert {r.code for r in refused} == {"unknown_recipient"} and len(refused) == 15
    stored = {r.id for r in results if isinstance(r, w.SendReply)}
    # i = 4k+1 pairs with 4k (refused): stored once on its own; 4k+2 and 4k+3 share one row
    assert len(stored) == 30
    got = await bus.recv("bob", max=32)
    got += await bus.recv("bob", max=32)
    assert sorted(m.id for m in got) == sorted(stored)
    assert (s1 - s0) / (n1 - n0) > 1  # concurrent sends were committed together


async def test_a_storage_error_in_a_batch_stores_nothing_of_it_and_says_so(bus: Bus, broker: BrokerService) -> None:
    import sqlite3

    side = sqlite3.connect(broker.settings.broker_db)
    side.execute("CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.body = 'poison' "
                 "BEGIN SELECT RAISE(ABORT, 'the disk says no'); END")
    side.close()

    async def one(body: str) -> w.SendReply | HiveError:
        try:
            return await bus.send("alice", "bob", body)
        except HiveError as err:
            return err

    bodies = [f"m{i}" for i in range(20)] + ["poison"] + [f"n{i}" for i in range(20)]
    results = dict(zip(bodies, await asyncio.gather(*(one(b) for b in bodies)), strict=True))
    assert isinstance(results["poison"], HiveError) and results["poison"].code == "internal"
    ok = {b: r.id for b, r in results.items() if isinstance(r, w.SendReply)}
    refused = {b for b, r in results.items() if isinstance(r, HiveError)}
    assert {r.code for r in results.values() if isinstance(r, HiveError)} == {"internal"}
    got = await bus.recv("bob", max=32) + await bus.recv("bob", max=32)
    assert sorted((m.body, m.id) for m in got) == sorted(ok.items())  # exactly the acknowledged ones
    assert not refused & {m.body for m in got}
    assert (await bus.send("alice", "bob", "after")).id  # the broker goes on


@pytest.mark.parametrize(
    ("sender", "to", "body", "kw", "code"),
    [
        ("alice", "nobody", "hi", {}, "unknown_recipient"),
        ("alice", "bob", "", {}, "bad_request"),
        ("alice", "bob", "  \n ", {}, "bad_request"),
        ("alice", "bob", "x" * (64 * 1024 + 1), {}, "too_large"),
        ("alice", "Bob", "hi", {}, "bad_name"),
        ("alice", "../etc", "hi", {}, "bad_name"),
        ("alice", "bob\n", "hi", {}, "bad_name"),
        ("Alice", "bob", "hi", {}, "bad_name"),
        ("alice", "bob", "hi", {"id": ""}, "bad_request"),
        ("alice", "bob", "hi", {"id": "x" * 200}, "bad_request"),
        ("alice", "bob", "hi", {"in_reply_to": ""}, "bad_request"),
    ],
)
async def test_send_errors(bus: Bus, sender: str, to: str, body: str, kw: dict[str, str], code: str) -> None:
    from prometheus_client import REGISTRY

    def counted() -> tuple[float, float]:
        return (REGISTRY.get_sample_value("hive_broker_errors_total", {"endpoint": "send", "code": code}) or 0.0,
                REGISTRY.get_sample_value("hive_requests_total",
                                          {"service": "hive-broker", "endpoint": "send", "outcome": code}) or 0.0)

    before = counted()
    with pytest.raises(HiveError) as e:
        if sender == "Alice":  # subjects.broker() would refuse to build this subject: go raw
            msg = await bus.raw("hive.broker.Alice.send", b'{"to":"bob","body":"hi"}')
            from hivewire import codec

            codec.parse_reply(msg.data, msg.headers, w.SendReply)
        await bus.send(sender, to, body, **kw)
    assert e.value.code == code
    assert (await bus.counts("bob")).unread == 0
    assert counted() == (before[0] + 1, before[1] + 1)  # the refusal shows in both metrics


async def test_body_at_limit_is_fine(bus: Bus) -> None:
    await bus.send("alice", "bob", "x" * (64 * 1024))
    assert len((await bus.recv("bob"))[0].body) == 64 * 1024


async def test_broadcast_reaches_every_known_agent_but_sender(bus: Bus) -> None:
    await bus.register("carol")
    sent = await bus.send("alice", "*", "all hands")
    assert sent.recipients == ["bob", "carol", "manager"]
    for agent in ("bob", "carol", "manager"):
        got = await bus.recv(agent)
        assert [m.body for m in got] == ["all hands"]
    assert await bus.recv("alice") == []


async def test_operator_inbox(bus: Bus) -> None:
    await bus.send("alice", "operator", "need a hand")
    inbox = await bus.operator(ops.MESSAGES_LIST, w.MessagesListRequest(recipient="operator", unread=True))
    assert [m.body for m in inbox.messages] == ["need a hand"]
    # the operator speaks as `operator`
    await bus.send("operator", "alice", "on it")
    assert [m.sender for m in await bus.recv("alice")] == ["operator"]


async def test_registry_and_presence_make_agents_known(bus: Bus) -> None:
    with pytest.raises(HiveError) as e:
        await bus.send("alice", "dave", "hi")
    assert e.value.code == "unknown_recipient"
    await bus.presence("dave", "inst-1")

    async def known() -> bool:
        try:
            await bus.send("alice", "dave", "hi", id="k1")
            return True
        except HiveError:
            return False

    await eventually(known)
    # the deployer removes an agent: unknown again, even with a later heartbeat

    r = await bus.client.request(ops.REGISTRY_REMOVE, w.RegistryRequest(name="dave"))
    assert "dave" not in r.agents
    await bus.presence("dave", "inst-2")
    await asyncio.sleep(0.1)
    with pytest.raises(HiveError):
        await bus.send("alice", "dave", "hi again")
    with pytest.raises(HiveError) as e:
        await bus.client.request(ops.REGISTRY_REMOVE, w.RegistryRequest(name="manager"))
    assert e.value.code == "forbidden"
    with pytest.raises(HiveError) as e:
        await bus.client.request(ops.REGISTRY_UPSERT, w.RegistryRequest(name="operator"))
    assert e.value.code == "bad_name"


async def test_recv_max_and_cap(bus: Bus) -> None:
    for i in range(40):
        await bus.send("alice", "bob", f"m{i}")
    assert len(await bus.recv("bob")) == 1  # default max 1
    got = await bus.recv("bob", max=1000)
    assert len(got) == 32
    assert [m.body for m in got] == [f"m{i}" for i in range(1, 33)]
    with pytest.raises(HiveError) as e:
        await bus.recv("bob", max=0)
    assert e.value.code == "bad_request"
    with pytest.raises(HiveError) as e:
        await bus.recv("bob", wait_s=-1)
    assert e.value.code == "bad_request"


async def polls_waiting(broker: BrokerService, agent: str, n: int) -> None:
    """Barrier: `n` long polls of `agent` are registered in the broker and waiting."""

    async def waiting() -> bool:
        return len(broker.waiters._by_agent.get(agent, ())) == n

    await eventually(waiting)


async def presences_handled(bus: Bus, tag: str) -> None:
    """Barrier: the broker has handled every presence `bus` published before this call.

    Presences go out on one connection and the broker handles its presence subscription one
    message at a time, in order. This one is a new instance of alice holding a message: once
    that message comes back redelivered, every earlier presence has been handled."""
    sent = await bus.send("bob", "alice", f"barrier {tag}")
    await bus.presence("alice", f"{tag}-a")
    await eventually(lambda: bus.recv("alice", instance=f"{tag}-a"))
    await bus.presence("alice", f"{tag}-b")

    async def back() -> list[w.Message]:
        return await bus.recv("alice", instance=f"{tag}-b")

    assert [(m.id, m.redelivered) for m in await eventually(back)] == [(sent.id, True)]
    assert await bus.ack("alice", [sent.id]) == 1


async def test_long_poll_is_woken_by_a_send(bus: Bus, broker: BrokerService) -> None:
    poll = asyncio.create_task(bus.recv("bob", wait_s=60))
    await polls_waiting(broker, "bob", 1)
    assert not poll.done()
    await bus.send("alice", "bob", "wake up")
    got = await asyncio.wait_for(poll, 10)
    assert [m.body for m in got] == ["wake up"]


async def test_long_poll_times_out_empty(bus: Bus) -> None:
    assert await bus.recv("bob", wait_s=0.3) == []


async def test_concurrent_polls_never_share_a_message(bus: Bus, broker: BrokerService) -> None:
    polls = [asyncio.create_task(bus.recv("bob", wait_s=5)) for _ in range(4)]
    await polls_waiting(broker, "bob", 4)
    for i in range(4):
        await bus.send("alice", "bob", f"m{i}")
    got = await asyncio.gather(*polls)
    assert sorted(m.body for batch in got for m in batch) == ["m0", "m1", "m2", "m3"]


async def test_redelivery_after_new_presence_instance(bus: Bus) -> None:
    await bus.presence("bob", "i-1")
    sent = await bus.send("alice", "bob", "do the thing")
    first = await bus.recv("bob", instance="i-1")
    assert [m.redelivered for m in first] == [False]
    # same instance heartbeats again: nothing comes back
    await bus.presence("bob", "i-1")
    await presences_handled(bus, "x")
    assert await bus.recv("bob") == []
    # harness crashed and restarted
    await bus.presence("bob", "i-2")

    async def back() -> list[w.Message]:
        return await bus.recv("bob", instance="i-2")

    again = await eventually(back)
    assert [(m.id, m.redelivered) for m in again] == [(sent.id, True)]
    assert await bus.ack("bob", [sent.id]) == 1
    await bus.presence("bob", "i-3")
    await presences_handled(bus, "y")
    assert await bus.recv("bob") == []


async def test_a_recv_whose_reply_was_lost_is_reclaimed(bus: Bus) -> None:
    """A partition ate the recv reply: the same instance asks again with reclaim (issue 26)."""
    await bus.presence("bob", "i-1")
    sent = await bus.send("alice", "bob", "lost on the way")
    other = await bus.send("bob", "alice", "not bob's")
    await bus.recv("bob", instance="i-1")  # delivered; pretend the reply never arrived
    assert await bus.recv("bob", instance="i-1") == []  # without reclaim: still in flight to i-1
    got = await bus.recv("bob", instance="i-1", reclaim=True)
    assert [(m.id, m.redelivered) for m in got] == [(sent.id, True)]
    assert await bus.ack("bob", [sent.id]) == 1
    assert [m.id for m in await bus.recv("alice", instance="a-1")] == [other.id]  # nobody else's


async def test_redelivery_after_inflight_timeout(broker: BrokerService, bus: Bus) -> None:
    import time

    sent = await bus.send("alice", "bob", "slow turn")
    await bus.recv("bob")
    n = await broker.background.redeliver_stale(time.time() + broker.config.inflight_timeout_s + 1)
    assert n == 1
    got = await bus.recv("bob")
    assert [(m.id, m.redelivered) for m in got] == [(sent.id, True)]


async def test_counts(bus: Bus) -> None:
    await bus.send("alice", "bob", "one")
    await bus.send("alice", "bob", "two")
    assert (await bus.counts("bob")).unread == 2
    await bus.recv("bob")
    c = await bus.counts("bob")
    assert (c.unread, c.open_questions, c.pending_reminders) == (1, 0, 0)


async def test_list_paging_and_search(bus: Bus) -> None:
    for i in range(5):
        await bus.send("alice", "bob", f"note number {i} about kangaroos" if i % 2 else f"note {i}")
    page1 = await bus.operator(ops.MESSAGES_LIST, w.MessagesListRequest(agent="bob", limit=2))
    assert [m.body for m in page1.messages] == ["note 4", "note number 3 about kangaroos"]
    page2 = await bus.operator(ops.MESSAGES_LIST,
                               w.MessagesListRequest(agent="bob", limit=2, before_id=page1.next_before_id))
    assert [m.body for m in page2.messages] == ["note 2", "note number 1 about kangaroos"]
    found = await bus.operator(ops.MESSAGES_SEARCH, w.MessagesSearchRequest(query="kangaroos"))
    assert sorted(m.body for m in found.messages) == ["note number 1 about kangaroos", "note number 3 about kangaroos"]
    # FTS syntax in user input is taken literally, never an error
    odd = await bus.operator(ops.MESSAGES_SEARCH, w.MessagesSearchRequest(query='"AND OR ( NEAR*'))
    assert odd.messages == []
    with pytest.raises(HiveError) as e:
        await bus.operator(ops.MESSAGES_SEARCH, w.MessagesSearchRequest(query="  "))
    assert e.value.code == "bad_request"
    with pytest.raises(HiveError) as e:
        await bus.operator(ops.MESSAGES_LIST, w.MessagesListRequest(before_id="abc"))
    assert e.value.code == "bad_request"
    since = await bus.operator(ops.MESSAGES_LIST, w.MessagesListRequest(since=9e18))
    assert since.messages == []


async def test_a_failed_wake_publish_loses_nothing_and_is_counted(
    bus: Bus, broker: BrokerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import REGISTRY

    real, real_many = broker.transport.publish, broker.transport.publish_many

    async def flaky(subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        if subject.endswith(".wake"):
            raise ConnectionError("nats went away")
        await real(subject, data, headers)

    async def flaky_many(msgs: list[tuple[str, bytes]]) -> None:
        if any(subject.endswith(".wake") for subject, _ in msgs):
            raise ConnectionError("nats went away")
        await real_many(msgs)

    before = REGISTRY.get_sample_value("hive_broker_publish_failures_total") or 0.0
    monkeypatch.setattr(broker.transport, "publish", flaky)
    monkeypatch.setattr(broker.transport, "publish_many", flaky_many)
    sent = await bus.send("alice", "bob", "wake me if you can")  # acknowledged all the same
    assert REGISTRY.get_sample_value("hive_broker_publish_failures_total") == before + 1
    await eventually(lambda: _async(any(c.table == "messages" and c.id == sent.id for c in bus.changes)))
    assert [m.id for m in await bus.recv("bob")] == [sent.id]  # stored: the next poll finds it


async def _async(v: object) -> object:
    return v
