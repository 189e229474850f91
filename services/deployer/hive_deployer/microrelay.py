"""Relay NATS micro discovery to the harnesses this deployer runs.

An agent's NATS user may subscribe under `$SRV` only to its own harness's
`$SRV.<verb>.hive-harness.<agent>` (hivewire.natsauth): whoever could answer
the `$SRV.PING` / `$SRV.INFO` / `$SRV.STATS` broadcasts could pose as any
service (a fake `hive-broker` in `hive status` or `nats micro ls`). So the
harness answers only there, and the deployer answers the broadcasts (and the
`$SRV.<verb>.hive-harness` kind subjects) for it: it asks each harness it runs
at its own subject and forwards the reply to the asker, after checking that
the reply is that agent's harness (name `hive-harness`, id and metadata agent
= the agent, INFO endpoints only under `hive.agent.<agent>.`). A reply that
fails the check is dropped, logged and counted (`hive_deployer_failures_total
{what="srv_relay"}`). With the deployer down, `hive status` lists no harness.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from hive_deployer import metrics
from hivewire import subjects
from hivewire.tasks import cancel_and_wait
from hivewire.transport import Msg, Subscription, Transport

log = structlog.get_logger("hive_deployer.microrelay")
TIMEOUT_S = 0.5  # each harness answers in milliseconds; an asker waits about a second


def check_reply(verb: str, agent: str, data: bytes) -> bytes:
    """The harness's reply re-encoded, or ValueError saying why it is not that agent's harness."""
    try:
        body = json.loads(data)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("not an object")
    if body.get("name") != subjects.HARNESS_SERVICE or body.get("id") != agent:
        raise ValueError(f"claims to be {body.get('name')!r} id {body.get('id')!r}")
    meta = body.get("metadata")
    if not isinstance(meta, dict) or meta.get("agent") != agent:
        raise ValueError("metadata names another agent")
    if verb in ("INFO", "STATS"):
        own = f"hive.agent.{agent}."
        for ep in body.get("endpoints") or []:
            if not isinstance(ep, dict) or not str(ep.get("subject", "")).startswith(own):
                raise ValueError(f"endpoint outside {own}>")
    return json.dumps(body).encode()  # re-encoded: what was checked is what is forwarded


class MicroRelay:
    def __init__(self, transport: Transport, agents: Callable[[], Iterable[str]], timeout: float = TIMEOUT_S) -> None:
        self.transport = transport
        self.agents = agents  # the names of the harnesses running now
        self.timeout = timeout
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for verb in subjects.SRV_VERBS:
            for subject in (subjects.srv(verb), subjects.srv(verb, subjects.HARNESS_SERVICE)):
                self._subs.append(await self.transport.subscribe(subject, self._on_request))
        await self.transport.flush()  # started = listening: the subscriptions are at the server

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()
        await cancel_and_wait(*self._tasks)

    async def _on_request(self, msg: Msg) -> None:
        if not msg.reply:
            return
        verb = subjects.token(msg.subject, 1)
        task = asyncio.get_running_loop().create_task(self._relay(verb, msg.reply), name="srv-relay")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, verb: str, reply_to: str) -> None:
        await asyncio.gather(*(self._relay_one(verb, agent, reply_to) for agent in list(self.agents())))

    async def _relay_one(self, verb: str, agent: str, reply_to: str) -> None:
        try:
            got = await self.transport.request(subjects.harness_srv(verb, agent), b"", self.timeout)
        except Exception as exc:  # not answering (starting, stopping, gone): it is simply not listed
            log.debug("srv_relay_no_answer", agent=agent, verb=verb, error=str(exc) or type(exc).__name__)
            return
        try:
            data = check_reply(verb, agent, got.data)
        except ValueError as exc:
            metrics.FAILURES.labels("srv_relay").inc()
            log.warning("srv_relay_refused", agent=agent, verb=verb, reason=str(exc))
            return
        try:
            await self.transport.publish(reply_to, data)
        except Exception as exc:
            metrics.FAILURES.labels("srv_relay").inc()
            log.warning("srv_relay_failed", agent=agent, verb=verb, error=str(exc))


def running(procs: Any) -> Callable[[], list[str]]:
    """The names of the agents whose harness process runs now (`supervise.Procs`)."""
    return lambda: [name for name in list(procs.running) if procs.pid(name) is not None]
