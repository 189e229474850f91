"""What the services' clients send is the contract: the real broker in-process, an agent's MCP tools
(the harness's Bridge) and the dashboard's Upstream driving it, on a transport that checks every
request and event against the registry (its op's subject, a body of its op's type)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec

from hive_broker import build as build_broker
from hive_dashboard.config import DashboardConfig
from hive_dashboard.upstream import Upstream
from hive_harness.mcp_bridge import Bridge
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.transport import MemoryTransport, Msg
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.common import Empty
from hivewire.wire.op import Kind

from support.procs import running


class ContractTransport(MemoryTransport):
    """Notes every request and event that is not an op's, or whose body is not its op's type
    (a field the type lacks counts: a look-alike struct is caught)."""

    def __init__(self) -> None:
        super().__init__()
        self.violations: list[str] = []
        self.seen: set[str] = set()

    def _check(self, subject: str, data: bytes, kind: Kind) -> None:
        op = ops.lookup(subject, kind)
        if op is None:
            self.violations.append(f"{kind.value} on {subject}: no op has it")
            return
        self.seen.add(op.id)
        fields = {f.encode_name for f in msgspec.structs.fields(op.request)}
        try:
            msgspec.json.decode(data, type=op.request)
            extra = set(json.loads(data)) - fields
        except Exception as exc:
            self.violations.append(f"{subject}: not a {op.request.__name__}: {exc}")
            return
        if extra:
            self.violations.append(f"{subject}: {sorted(extra)} are not fields of {op.request.__name__}")

    async def request(self, subject: str, data: bytes, timeout: float = 5.0,
                      headers: dict[str, str] | None = None) -> Msg:
        self._check(subject, data, Kind.REQUEST)
        return await super().request(subject, data, timeout, headers)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None, reply: str = "") -> None:
        if not reply and not subject.startswith("_INBOX."):  # a request (checked) or a reply
            self._check(subject, data, Kind.EVENT)
        await super().publish(subject, data, headers, reply)

    async def publish_many(self, msgs: Sequence[tuple[str, bytes]]) -> None:
        for subject, data in msgs:
            await self.publish(subject, data)


async def test_the_checker_catches_what_is_not_the_contract() -> None:
    """The control: the check below could fail."""
    t = ContractTransport()
    await t.publish("hive.agent.alice.frobnicate", b"{}")
    await t.publish(ops.WAKE.subject_for(agent="alice"), b'{"reason": 5}')
    await t.publish(ops.BROKER_CHANGED.subject_for(), b'{"table": "t", "id": "1", "op": "insert", "x": 1}')
    assert len(t.violations) == 3, t.violations
    await t.close()


async def test_the_agents_tools_and_the_dashboard_send_only_the_contract(settings: Settings) -> None:
    t = ContractTransport()
    async with running(build_broker, t, settings):
        client = HiveClient(t)
        for name in ("alice", "bob", "manager"):
            await client.request(ops.REGISTRY_UPSERT, wb.RegistryRequest(name=name))
        alice, bob = Bridge("alice", client), Bridge("bob", client)
        manager = Bridge("manager", client)
        sent = json.loads(await alice.send(wb.SendRequest(to="bob", body="hello")))
        got = json.loads(await bob.broker(ops.BROKER_RECV, wb.RecvRequest(max=5)))
        assert [m["id"] for m in got["messages"]] == [sent["id"]]
        await bob.broker(ops.BROKER_ACK, wb.AckRequest(ids=[sent["id"]]))
        q = json.loads(await alice.broker(ops.BROKER_ASK, wb.AskRequest(question="tea?", to="bob")))
        assert "question_id" in json.loads(await bob.broker(ops.BROKER_ANSWER, wb.AnswerRequest(
            question_id=q["question_id"], answer="yes")))
        r = json.loads(await alice.broker(ops.BROKER_REMIND, wb.RemindRequest(body="later", in_s=3600)))
        assert json.loads(await alice.broker(ops.BROKER_LOOSE_ENDS, wb.LooseEndsRequest()))["reminders"]
        await alice.broker(ops.BROKER_CANCEL_LOOSE_END, wb.CancelLooseEndRequest(kind="reminder", id=r["reminder_id"]))
        assert "approval_id" in json.loads(await manager.broker(
            ops.BROKER_APPROVE, wb.ApproveRequest(kind="spawn", agent="carol")))
        await alice.broker(ops.BROKER_COUNTS, Empty())

        up = Upstream(t, DashboardConfig(settings=settings, operator_token="x"))
        pending = await up.request(ops.APPROVALS_LIST, wb.ApprovalsListRequest(status="pending"))
        await up.request(ops.APPROVALS_RESOLVE, wb.ResolveRequest(approval_id=pending.approvals[0].approval_id,
                                                                  decision="deny"))
        await up.request(ops.BROKER_SEND, wb.SendRequest(to="alice", body="from the operator"), agent="operator")
        assert (await up.request(ops.MESSAGES_LIST, wb.MessagesListRequest(agent="alice"))).messages
        await up.request(ops.QUESTIONS_LIST, wb.QuestionsListRequest())
        await up.request(ops.LEDGER_COSTS, wb.CostsRequest())
        await up.request(ops.BUDGET_SHOW, Empty())
        await t.flush()
    await t.close()
    assert t.violations == []
    # what went out, so the check above is not vacuous: the tools' requests and the broker's events
    assert {"broker.send", "broker.recv", "broker.ask", "broker.answer", "broker.remind", "broker.approve",
            "broker.approvals_resolve", "broker.wake", "broker.changed"} <= t.seen
