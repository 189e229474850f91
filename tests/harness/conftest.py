"""Harness test fixtures: the Messages-API simulator, a FAKE broker, harness runners.

The FAKE broker below stands in for hive-broker (issue 3) until it lands: a
tiny in-test micro service on the real nats-server implementing the subset of
the broker contract the harness uses (send/recv/ack/counts/loose_ends) with
the real wire structs and wake notifications. It is not the broker.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hive_harness.service import HarnessService
from hive_harness.simmodel import SimModel
from hivewire import subjects
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.service import Context, Endpoint, HiveClient, MicroService
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from hivewire.wire.common import Empty
from tests.support.claude import claude_cli, missing_hint, pin_model
from tests.support.procs import running

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = claude_cli()  # the pin in .tools, or HIVE_TEST_CLAUDE_VERSION's .tools-<ver>
DATA = Path(__file__).resolve().parent / "data"


class FakeBroker(MicroService):
    """FAKE broker (test stand-in): in-memory inboxes, in-flight tracking, wakes."""

    name = "hive-fake-broker"

    def __init__(self, transport: Any, agents: set[str]) -> None:
        super().__init__(transport)
        self.agents = agents | {"operator"}
        self.inbox: dict[str, list[wb.Message]] = {}
        self.acked: list[str] = []
        self.recv_log: list[tuple[str, str, bool]] = []

    def endpoints(self) -> list[Endpoint[Any]]:
        p = subjects.broker_pattern
        return [
            Endpoint("send", p("send"), wb.SendRequest, self.send),
            Endpoint("recv", p("recv"), wb.RecvRequest, self.recv),
            Endpoint("ack", p("ack"), wb.AckRequest, self.ack),
            Endpoint("counts", p("counts"), Empty, self.counts),
            Endpoint("loose_ends", p("loose_ends"), wb.LooseEndsRequest, self.loose_ends),
        ]

    async def send(self, ctx: Context, req: wb.SendRequest) -> wb.SendReply:
        sender = ctx.token(2)
        if req.to not in self.agents:
            raise HiveError("unknown_recipient", f"no agent {req.to!r}")
        msg = wb.Message(id=req.id or uuid.uuid4().hex, sender=sender, to=req.to, body=req.body,
                         sent_at=time.time(), in_reply_to=req.in_reply_to)
        self.inbox.setdefault(req.to, []).append(msg)
        if req.to != "operator":
            await self.publish(subjects.wake(req.to), wb.Wake(reason="message", ref=msg.id))
        return wb.SendReply(id=msg.id, sent_at=msg.sent_at, recipients=[req.to])

    async def recv(self, ctx: Context, req: wb.RecvRequest) -> wb.RecvReply:
        """In-flight (delivered, unacked) messages come back first, flagged redelivered."""
        me = ctx.token(2)
        out = []
        for m in self.inbox.get(me, []):
            if m.acked_at is not None:
                continue
            if m.delivered_at is not None:
                m.redelivered = True
            m.delivered_at = time.time()
            out.append(m)
            self.recv_log.append((me, m.id, m.redelivered))
            if len(out) >= req.max:
                break
        return wb.RecvReply(messages=out)

    async def ack(self, ctx: Context, req: wb.AckRequest) -> wb.AckReply:
        me, n = ctx.token(2), 0
        for m in self.inbox.get(me, []):
            if m.id in req.ids and m.acked_at is None:
                m.acked_at = time.time()
                self.acked.append(m.id)
                n += 1
        return wb.AckReply(acked=n)

    async def counts(self, ctx: Context, req: Empty) -> wb.CountsReply:
        me = ctx.token(2)
        unread = sum(1 for m in self.inbox.get(me, []) if m.delivered_at is None)
        return wb.CountsReply(unread=unread, open_questions=0, pending_reminders=0)

    async def loose_ends(self, ctx: Context, req: wb.LooseEndsRequest) -> wb.LooseEnds:
        return wb.LooseEnds()

    def push(self, to: str, body: str, sender: str = "operator") -> wb.Message:
        msg = wb.Message(id=uuid.uuid4().hex, sender=sender, to=to, body=body, sent_at=time.time())
        self.inbox.setdefault(to, []).append(msg)
        return msg


@pytest.fixture
def sim(sim_model: SimModel) -> SimModel:
    """The Messages-API simulator (scripted; not a model): the suite-wide `sim_model`."""
    return sim_model


@pytest.fixture
async def real_broker(nats_transport: NatsTransport, settings: Settings, client: HiveClient,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MicroService]:
    """The REAL hive-broker in-process (fast scheduler), with alice, bob and manager known."""
    from hive_broker import build as build_broker

    monkeypatch.setenv("HIVE_BROKER_TICK_S", "0.5")
    async with running(build_broker, nats_transport, settings) as svc:
        for name in ("alice", "bob", "manager"):
            await client.call(subjects.broker_registry("upsert"), wb.RegistryRequest(name=name), wb.RegistryReply)
        yield svc


@pytest.fixture
def cli_env(hive_home: Path, tmp_path: Path, sim: SimModel, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Env for harnesses running the real claude CLI against the simulator."""
    if not CLAUDE.exists():
        pytest.skip(missing_hint())
    home = tmp_path / "userhome"
    home.mkdir()
    env = {
        "HIVE_AGENT_CMD": str(CLAUDE),
        "ANTHROPIC_BASE_URL": sim.url,
        "ANTHROPIC_API_KEY": "sk-simulator",
        "HOME": str(home),
        "HIVE_RATE_LIMIT_PARK_S": "2",
        "HIVE_WAKE_POLL_S": "1",
        "HIVE_HEARTBEAT_S": "0.5",
        "HIVE_ALLOWED_TOOLS": "",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    return {**env, "HIVE_HOME": str(hive_home), "HIVE_NATS_URL": os.environ["HIVE_NATS_URL"],
            "HIVE_METRICS_ADDR": "127.0.0.1:0"}


@pytest.fixture
async def broker(nats_transport: NatsTransport) -> AsyncIterator[FakeBroker]:
    b = FakeBroker(nats_transport, {"alice", "bob", "manager"})
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
async def client(nats_transport: NatsTransport) -> HiveClient:
    return HiveClient(nats_transport, timeout=10.0)


@pytest.fixture
async def harness_factory(
    nats_url: str, settings: Settings, cli_env: dict[str, str]
) -> AsyncIterator[Any]:
    """Start in-process harnesses (own NATS connection each); all stopped at the end."""
    started: list[tuple[HarnessService, NatsTransport]] = []

    async def start(agent: str, model: str | None = None) -> HarnessService:
        if model is not None:
            pin_model(settings.home, agent, model)
        t = await NatsTransport.connect(nats_url, name=f"hive-harness-{agent}", forever=False)
        svc = HarnessService(t, Settings.from_env(), agent)
        await svc.start()
        started.append((svc, t))
        return svc

    async def stop(svc: HarnessService) -> None:
        for i, (s, t) in enumerate(started):
            if s is svc:
                await s.stop()
                await t.close()
                started.pop(i)
                return

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for s, t in reversed(started):
        await s.stop()
        await t.close()
