"""The broker's in-memory roster of known agents (known.Roster) agrees with broker.sqlite."""

from __future__ import annotations

import random
import sqlite3

import pytest

from hive_broker import known
from hive_broker.service import BrokerService
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from hivewire.wire import broker as w
from hivewire.wire import ops

from .conftest import FAST, Bus, settle

NAMES = ["carol", "dave", "erin", "frank"]


def known_in_file(settings: Settings, names: set[str]) -> set[str]:
    conn = sqlite3.connect(settings.broker_db)
    try:
        return known.known_among(conn, names)
    finally:
        conn.close()


async def test_roster_follows_every_registry_change_and_a_send_sees_it(bus: Bus, broker: BrokerService) -> None:
    rng = random.Random(7)
    for step in range(40):
        name = rng.choice(NAMES)
        how = rng.choice(["upsert", "remove", "presence"])
        if how == "presence":
            await bus.presence(name, f"inst-{step}")
            await settle()
        else:
            await bus.client.request(ops.REGISTRY_UPSERT if how == "upsert" else ops.REGISTRY_REMOVE,
                                     w.RegistryRequest(name=name))
        wanted = {*NAMES, "manager", "operator", "nobody"}
        in_file = known_in_file(broker.settings, wanted)
        assert broker.roster.known_among(wanted) == in_file, f"step {step}: {how} {name}"
        # and the send path answers accordingly
        for to in NAMES:
            try:
                await bus.send("alice", to, f"step {step}")
                assert to in in_file
            except HiveError as err:
                assert err.code == "unknown_recipient" and to not in in_file


async def test_a_restarted_broker_knows_who_was_registered(
    nats_transport: NatsTransport, settings: Settings, nats_url: str
) -> None:
    t = await NatsTransport.connect(nats_url, name="roster-test", forever=False)
    bus = Bus(t)
    first = BrokerService(nats_transport, settings, config=FAST)
    await first.start()
    await bus.register("alice", "carol", "dave")
    await bus.client.request(ops.REGISTRY_REMOVE, w.RegistryRequest(name="dave"))
    await first.stop()
    second = BrokerService(nats_transport, settings, config=FAST)
    await second.start()
    try:
        assert (await bus.send("alice", "carol", "still there?")).id
        with pytest.raises(HiveError) as e:
            await bus.send("alice", "dave", "gone?")
        assert e.value.code == "unknown_recipient"
    finally:
        await second.stop()
        await t.close()


async def test_an_upsert_that_fails_to_store_leaves_the_agent_unknown(bus: Bus, broker: BrokerService) -> None:
    side = sqlite3.connect(broker.settings.broker_db)
    side.execute("CREATE TRIGGER poison BEFORE INSERT ON known_agents WHEN NEW.name = 'mallory' "
                 "BEGIN SELECT RAISE(ABORT, 'the disk says no'); END")
    side.close()
    with pytest.raises(HiveError) as e:
        await bus.register("mallory")
    assert e.value.code == "internal"
    with pytest.raises(HiveError) as e:
        await bus.send("alice", "mallory", "hello?")
    assert e.value.code == "unknown_recipient"
