"""Executing approvals that live in the broker.

The deployer listens to `hive.broker.changed` for the approvals table and
reads the approvals through `hive.operator.approvals.list`:

- a pending `apply_commit` gets its proposal/<id> tag at once (so later
  edits of the config repo cannot change what gets built);
- an approved one is built and deployed (`Deploys.approve`), an approved
  `spawn` spawns (or revives) the agent, an approved `init_config` seeds the
  config repo;
- a denied one is tagged denied/<id>.

Each outcome is published on `hive.deployer.deploy.<agent>` (`DeployEvent`)
for the broker to resolve the approval, and told to the manager.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from hive_deployer import repos
from hive_deployer.deploys import Deploys
from hivewire import codec, subjects
from hivewire.errors import HiveError
from hivewire.service import HiveClient
from hivewire.tasks import cancel_and_wait
from hivewire.transport import Msg, Subscription, Transport
from hivewire.wire import ops
from hivewire.wire.broker import Approval, ApprovalsListRequest, Changed
from hivewire.wire.deployer import DeployEvent

log = structlog.get_logger("hive_deployer.bridge")


class BrokerBridge:
    def __init__(self, transport: Transport, deploys: Deploys) -> None:
        self.transport = transport
        self.client = HiveClient(transport, timeout=3.0)
        self.deploys = deploys
        self._sub: Subscription | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seen: set[str] = set()

    async def start(self) -> None:
        self._sub = await self.transport.subscribe(subjects.BROKER_CHANGED, self._on_changed)
        self._task = asyncio.create_task(self._loop(), name="broker-bridge")
        self._wake.set()

    async def stop(self) -> None:
        if self._sub:
            await self._sub.unsubscribe()
        await cancel_and_wait(self._task)

    def kick(self) -> None:
        """Sync now (also done periodically: a broker that restarted announces nothing)."""
        self._wake.set()

    async def _on_changed(self, msg: Msg) -> None:
        try:
            ch = codec.decode(msg.data, Changed)
        except Exception:
            return
        if ch.table == "approvals":
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync()
            except HiveError as exc:
                log.info("broker_unavailable", error=exc.message)
            except Exception:
                log.exception("bridge_sync_failed")

    async def _list(self, status: Any) -> list[Approval]:
        reply = await self.client.request(ops.APPROVALS_LIST, ApprovalsListRequest(status=status, limit=500))
        return reply.approvals

    async def sync(self) -> None:
        for a in await self._list("pending"):
            if a.kind == "apply_commit" and a.commit_ref and a.approval_id not in self._seen:
                try:
                    if await asyncio.to_thread(repos.proposal_sha, self.deploys.layout, a.agent, a.approval_id) is None:
                        await self.deploys.propose(a.agent, a.approval_id, a.commit_ref, a.approval_id)
                    self._seen.add(a.approval_id)
                except HiveError as exc:
                    log.warning("proposal_failed", approval=a.approval_id, error=exc.message)
        for a in await self._list("approved"):
            await self.execute(a)
        for a in await self._list("denied"):
            if a.kind == "apply_commit" and f"denied:{a.approval_id}" not in self._seen:
                self._seen.add(f"denied:{a.approval_id}")
                try:
                    stages = await asyncio.to_thread(repos.stages, self.deploys.layout, a.agent, a.approval_id)
                    if "proposal" in stages and "denied" not in stages:
                        await self.deploys.deny(a.agent, a.approval_id, a.note)
                        await self._publish(a, "denied", None, a.note)
                except HiveError as exc:
                    log.warning("deny_failed", approval=a.approval_id, error=exc.message)

    async def execute(self, a: Approval) -> None:
        store = self.deploys.agents.store
        did = repos.deploy_id(a.approval_id)
        ended = await store.deploy_status(a.agent, did)
        if ended in ("deployed", "failed", "denied"):
            # still `approved` in the broker: it missed the outcome (it was down); tell it again
            await self._publish(a, ended, None, None)
            return
        sha, error = None, None
        try:
            if a.kind == "apply_commit":
                reply = await self.deploys.approve(a.agent, did, a.commit_ref)
                sha, error = reply.sha, reply.error
            elif a.kind == "spawn":
                row = await store.agent(a.agent)
                if row is not None and row.state == "destroyed":
                    await self.deploys.agents.revive(a.agent)
                elif row is None:
                    await self.deploys.agents.spawn(a.agent)
                await store.record_deploy(a.agent, did, "spawn", "deployed", approval_id=a.approval_id)
            elif a.kind == "init_config":
                sha = await self.deploys.init_config(a.agent)
                await store.record_deploy(a.agent, did, "init_config", "deployed", approval_id=a.approval_id)
        except HiveError as exc:
            error = exc.message
            await store.record_deploy(a.agent, did, a.kind, "failed", approval_id=a.approval_id, note=error)
        await self._publish(a, "failed" if error else "deployed", sha, error)

    async def _publish(self, a: Approval, outcome: Any, sha: str | None, error: str | None) -> None:
        ev = DeployEvent(agent=a.agent, id=repos.deploy_id(a.approval_id), approval_id=a.approval_id,
                         outcome=outcome, sha=sha, error=error, ts=time.time())
        await self.client.emit(ops.DEPLOYER_DEPLOY, ev, agent=a.agent)
