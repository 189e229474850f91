"""Fixtures of the deployer suite: an in-process deployer on real NATS, real git, real harnesses.

The broker is the real hive-broker, in-process on the test's nats-server (one per test,
started with the first deployer, `manager` known as in a real hive): the deployer's
registry updates and system messages land in its store, read back through `BrokerView`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hive_deployer.lifecycle import Options
from hive_deployer.runtimes import ProcessRuntime, Runtime
from hive_deployer.service import DeployerService
from hivewire import codec, subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.deployer import AgentInfo
from hivewire.wire.op import Op
from tests.support.procs import running, wait_for

UNCONFINED = ProcessRuntime(allow_unconfined=True)  # deployer logic only: these fake harnesses run no agent CLI

Req = TypeVar("Req")
Rep = TypeVar("Rep")


class BrokerView:
    """The real broker's store, read back: what was sent to whom, which agents it knows."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc

    async def to(self, name: str) -> list[str]:
        """Bodies of the messages stored for `name`, oldest first."""
        rows = await self.svc.db.read(lambda c: c.execute(
            "SELECT body FROM messages WHERE recipient = ? ORDER BY id", (name,)).fetchall())
        return [r[0] for r in rows]


@dataclass
class Env:
    svc: DeployerService
    client: HiveClient
    home: Path
    broker: BrokerView | None
    states: list[AgentInfo]

    async def call(self, op: Op[Req, Rep], req: Req, timeout: float = 30.0) -> Rep:
        return await self.client.request(op, req, timeout=timeout)


async def told(env: Env, who: str, words: str) -> None:
    """System messages go through an ordered, asynchronous queue: wait for one to land."""

    async def landed() -> bool:
        assert env.broker is not None
        return any(words in b for b in await env.broker.to(who))

    await wait_for(landed, timeout=10)


def fast_options(**kw: Any) -> Options:
    base = dict(stop_timeout=5.0, presence_stale_s=12.0, backoff_base_s=0.2, backoff_max_s=2.0)
    base.update(kw)
    return Options(**base)  # type: ignore[arg-type]


@pytest.fixture
async def make_deployer(
    settings: Settings, nats_transport: NatsTransport, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    from hive_broker import build as build_broker

    monkeypatch.setenv("HIVE_DEPLOYER_ENSURE_MANAGER", "0")
    started: list[DeployerService] = []
    stack = AsyncExitStack()
    brokers: list[BrokerView] = []

    async def the_broker() -> BrokerView:
        if not brokers:
            svc = await stack.enter_async_context(running(build_broker, nats_transport, settings))
            await HiveClient(nats_transport).request(ops.REGISTRY_UPSERT, wb.RegistryRequest(name="manager"))
            brokers.append(BrokerView(svc))
        return brokers[0]

    async def make(runtime: Runtime | None = None, ensure_manager: bool = False, home: Path | None = None,
                   with_broker: bool = True, **opts: Any) -> Env:
        """`with_broker=False`: the test runs its own broker (e.g. with a fresh ledger stream), or none."""
        s = settings if home is None else Settings(home=home, nats_url=settings.nats_url,
                                                   metrics_addr=settings.metrics_addr)
        svc = DeployerService(nats_transport, s, runtime=runtime or UNCONFINED, options=fast_options(**opts),
                              ensure_manager=ensure_manager)
        broker = await the_broker() if with_broker else None
        states: list[AgentInfo] = []

        async def on_state(msg: Any) -> None:
            states.append(codec.decode(msg.data, AgentInfo))

        await nats_transport.nc.subscribe(subjects.DEPLOYER_STATE_ALL, cb=on_state)
        await svc.start()
        started.append(svc)
        return Env(svc, HiveClient(nats_transport, timeout=30), s.home, broker, states)

    yield make
    for svc in started:
        if svc._handle is not None:
            await svc.stop()
    await stack.aclose()


@pytest.fixture
async def deployer(make_deployer: Callable[..., Any]) -> Env:
    env: Env = await make_deployer()
    return env
