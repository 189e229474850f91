"""Fixtures for the broker tests: an in-process broker on a real nats-server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from hive_broker.config import BrokerConfig
from hive_broker.service import BrokerService
from hivewire import subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.transport import Msg
from hivewire.wire import broker as w
from hivewire.wire import ops
from hivewire.wire.common import Empty
from hivewire.wire.op import Op

from support.procs import ServiceProcess, wait_for

Req = TypeVar("Req")
Rep = TypeVar("Rep")
FAST = BrokerConfig(tick_s=0.1, gauges_s=0.1)


class Bus:
    """A test client: typed broker calls plus a record of wakes and changes."""

    def __init__(self, transport: NatsTransport) -> None:
        self.transport = transport
        self.client = HiveClient(transport, timeout=5.0)
        self.wakes: list[tuple[str, w.Wake]] = []
        self.changes: list[w.Changed] = []

    async def listen(self) -> None:
        async def on_wake(msg: Msg) -> None:
            self.wakes.append((subjects.token(msg.subject, 2), msgspec.json.decode(msg.data, type=w.Wake)))

        async def on_changed(msg: Msg) -> None:
            self.changes.append(msgspec.json.decode(msg.data, type=w.Changed))

        await self.transport.subscribe(subjects.agent_pattern("wake"), on_wake)
        await self.transport.subscribe(subjects.BROKER_CHANGED, on_changed)
        await self.transport.flush()

    async def call(self, agent: str, op: Op[Req, Rep], req: Req, timeout: float = 5.0) -> Rep:
        """`agent`'s own broker request (`hive.broker.<agent>.<verb>`)."""
        return await self.client.request(op, req, timeout=timeout, agent=agent)

    async def operator(self, op: Op[Req, Rep], req: Req) -> Rep:
        return await self.client.request(op, req)

    async def raw(self, subject: str, data: bytes, timeout: float = 5.0) -> Msg:
        return await self.transport.request(subject, data, timeout)

    async def register(self, *names: str) -> None:
        for n in names:
            await self.client.request(ops.REGISTRY_UPSERT, w.RegistryRequest(name=n))

    async def send(self, sender: str, to: str, body: str, **kw: Any) -> w.SendReply:
        return await self.call(sender, ops.BROKER_SEND, w.SendRequest(to=to, body=body, **kw))

    async def recv(self, agent: str, max: int = 1, wait_s: float = 0.0, **kw: Any) -> list[w.Message]:
        r = await self.call(agent, ops.BROKER_RECV, w.RecvRequest(max=max, wait_s=wait_s, **kw), timeout=wait_s + 5)
        return r.messages

    async def ack(self, agent: str, ids: list[str]) -> int:
        return (await self.call(agent, ops.BROKER_ACK, w.AckRequest(ids=ids))).acked

    async def counts(self, agent: str) -> w.CountsReply:
        return await self.call(agent, ops.BROKER_COUNTS, Empty())

    async def presence(self, agent: str, instance: str, state: str = "idle") -> None:
        from hivewire.wire.agent import Presence

        await self.client.emit(ops.PRESENCE, Presence(state=state, since=0.0, instance=instance),  # type: ignore[arg-type]
                               agent=agent)
        await self.transport.flush()

    def wakes_for(self, agent: str) -> list[w.Wake]:
        return [wk for a, wk in self.wakes if a == agent]


@pytest.fixture
async def broker(nats_transport: NatsTransport, settings: Settings) -> AsyncIterator[BrokerService]:
    svc = BrokerService(nats_transport, settings, config=FAST)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def bus(broker: BrokerService, nats_url: str) -> AsyncIterator[Bus]:
    t = await NatsTransport.connect(nats_url, name="hive-broker-test", forever=False)
    b = Bus(t)
    await b.listen()
    await b.register("alice", "bob")
    try:
        yield b
    finally:
        await t.close()


async def eventually(pred: Any, timeout: float = 5.0) -> Any:
    return await wait_for(pred, timeout=timeout)


async def settle() -> None:
    await asyncio.sleep(0.05)


@pytest.fixture
def broker_proc(settings: Settings, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = {"HIVE_HOME": str(settings.home), "HIVE_NATS_URL": os.environ["HIVE_NATS_URL"],
           "HIVE_METRICS_ADDR": "127.0.0.1:0", "HIVE_LOG_LEVEL": "warning"}
    proc = ServiceProcess("broker", env, tmp_path / "logs")
    try:
        yield proc
    finally:
        proc.stop()


async def ready(client: HiveClient) -> None:
    async def up() -> bool:
        await client.request(ops.REGISTRY_LIST, Empty(), timeout=0.5)
        return True

    await wait_for(up, timeout=20)
