"""Cost-ledger rows under Hive's NATS auth (issue 24): the deployer's session row and a harness's
turn row reach the HIVE_LEDGER stream (acked) with their real credentials; an agent can neither put a
row on the session subject nor one under another agent's name."""

from __future__ import annotations

import time

import nats
import pytest
from nats.js.api import StreamConfig
from opskit import ConnectAs

from hive_deployer.sessions import jetstream_publisher
from hivewire import codec, subjects
from hivewire.wire.agent import TurnStats


def row(agent: str = "", session: str = "") -> bytes:
    now = time.time()
    return codec.encode(TurnStats(agent=agent, session=session, model="m", wake_from="session", result_kind="ok",
                                  started_at=now, ended_at=now, duration_ms=1, cost_usd=0.5,
                                  turn_id=f"t-{agent or session}"))


async def test_ledger_rows_reach_the_stream_only_from_their_owners(connect_as: ConnectAs) -> None:
    broker = await connect_as("svc_broker")
    js = broker.nc.jetstream()  # the broker keeps the stream (as hive_broker.ledger_service does)
    await js.add_stream(StreamConfig(name=subjects.LEDGER_STREAM, subjects=list(subjects.LEDGER_STREAM_SUBJECTS),
                                     duplicate_window=120.0))
    deployer = await connect_as("svc_deployer")
    await jetstream_publisher(deployer.nc)("session-s1", row(session="s1"))  # returns on the stream's ack
    alice = await connect_as("agent_alice")
    ajs = alice.nc.jetstream()
    ack = await ajs.publish(subjects.ledger_turn("alice"), row(agent="alice"), headers={"Nats-Msg-Id": "t-alice"})
    assert ack.stream == subjects.LEDGER_STREAM
    for subject in (subjects.SESSION_LEDGER, subjects.ledger_turn("bob")):
        with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
            await ajs.publish(subject, row(agent="alice"), timeout=1.0)
    assert await alice.violations()
    assert await deployer.violations() == []
    info = await js.stream_info(subjects.LEDGER_STREAM)
    assert info.state.messages == 2
    await js.delete_stream(subjects.LEDGER_STREAM)
