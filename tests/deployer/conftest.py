"""Fixtures of the deployer suite: an in-process deployer on real NATS, real git, real harnesses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hive_deployer.lifecycle import Options
from hive_deployer.runtimes import ProcessRuntime, Runtime
from hive_deployer.service import DeployerService
from hivewire import codec, subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire.broker import SendReply, SendRequest
from hivewire.wire.deployer import AgentInfo

UNCONFINED = ProcessRuntime(allow_unconfined=True)  # deployer logic only: these fake harnesses run no agent CLI


@dataclass
class FakeBroker:
    """Answers `hive.broker.operator.send` so tests can see the deployer's system messages."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    def to(self, name: str) -> list[str]:
        return [b for t, b in self.messages if t == name]


@dataclass
class Env:
    svc: DeployerService
    client: HiveClient
    home: Path
    broker: FakeBroker
    states: list[AgentInfo]

    async def call(self, verb: str, req: Any, reply: type[Any], timeout: float = 30.0) -> Any:
        return await self.client.call(subjects.deployer(verb), req, reply, timeout=timeout)


def fast_options(**kw: Any) -> Options:
    base = dict(stop_timeout=5.0, presence_stale_s=12.0, backoff_base_s=0.2, backoff_max_s=2.0)
    base.update(kw)
    return Options(**base)  # type: ignore[arg-type]


@pytest.fixture
async def make_deployer(
    settings: Settings, nats_transport: NatsTransport, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    monkeypatch.setenv("HIVE_DEPLOYER_ENSURE_MANAGER", "0")
    started: list[DeployerService] = []

    async def make(runtime: Runtime | None = None, ensure_manager: bool = False, home: Path | None = None,
                   **opts: Any) -> Env:
        s = settings if home is None else Settings(home=home, nats_url=settings.nats_url,
                                                   metrics_addr=settings.metrics_addr)
        svc = DeployerService(nats_transport, s, runtime=runtime or UNCONFINED, options=fast_options(**opts),
                              ensure_manager=ensure_manager)
        broker = FakeBroker()
        states: list[AgentInfo] = []

        async def on_send(msg: Any) -> None:
            req = codec.decode(msg.data, SendRequest)
            broker.messages.append((req.to, req.body))
            await nats_transport.nc.publish(msg.reply, codec.encode(SendReply(id="m", sent_at=0.0)))

        async def on_state(msg: Any) -> None:
            states.append(codec.decode(msg.data, AgentInfo))

        await nats_transport.nc.subscribe(subjects.broker("operator", "send"), cb=on_send)
        await nats_transport.nc.subscribe(subjects.DEPLOYER_STATE_ALL, cb=on_state)
        await svc.start()
        started.append(svc)
        return Env(svc, HiveClient(nats_transport, timeout=30), s.home, broker, states)

    yield make
    for svc in started:
        if svc._handle is not None:
            await svc.stop()


@pytest.fixture
async def deployer(make_deployer: Callable[..., Any]) -> Env:
    env: Env = await make_deployer()
    return env
