"""Questions, reminders, approvals, loose ends and operator views over NATS."""

from __future__ import annotations

import time

import pytest

from hive_broker.service import BrokerService
from hivewire.errors import HiveError
from hivewire.wire import broker as w
from hivewire.wire import ops

from .conftest import Bus, eventually


async def _async(v: object) -> object:
    return v


# --- questions -------------------------------------------------------------------
async def test_question_to_operator_answered(bus: Bus) -> None:
    r = await bus.call("alice", ops.BROKER_ASK, w.AskRequest(question="ship it?", options=["yes", "no"]))
    assert r.deadline_at is not None and r.deadline_at <= time.time() + 6 * 3600 + 1
    listed = await bus.operator(ops.QUESTIONS_LIST, w.QuestionsListRequest())
    assert [(q.question_id, q.asker, q.to, q.options) for q in listed.questions] == [
        (r.question_id, "alice", "operator", ["yes", "no"])
    ]
    assert (await bus.counts("alice")).open_questions == 1
    # an agent is not the addressee of an operator question
    with pytest.raises(HiveError) as e:
        await bus.call("bob", ops.BROKER_ANSWER, w.AnswerRequest(question_id=r.question_id, answer="yes"))
    assert e.value.code == "forbidden"
    await bus.operator(ops.QUESTIONS_ANSWER, w.OperatorAnswerRequest(question_id=r.question_id, answer="yes"))
    await eventually(lambda: _async([x for x in bus.wakes_for("alice") if x.reason == "answer"]))
    got = await bus.recv("alice")
    assert [(m.kind, m.in_reply_to, m.sender) for m in got] == [("answer", r.question_id, "operator")]
    assert "yes" in got[0].body
    with pytest.raises(HiveError) as e:
        await bus.operator(ops.QUESTIONS_ANSWER, w.OperatorAnswerRequest(question_id=r.question_id, answer="no"))
    assert e.value.code == "conflict"
    assert (await bus.counts("alice")).open_questions == 0


async def test_question_to_peer(bus: Bus) -> None:
    r = await bus.call("alice", ops.BROKER_ASK, w.AskRequest(question="which db?", options=["pg", "sqlite"], multi=True,
                                                             to="bob"))
    # the peer learns through its inbox
    got = await bus.recv("bob")
    assert got[0].kind == "question" and r.question_id in got[0].body
    with pytest.raises(HiveError) as e:  # only the addressee
        await bus.call("manager", ops.BROKER_ANSWER, w.AnswerRequest(question_id=r.question_id, answer="pg"))
    assert e.value.code == "forbidden"
    await bus.call("bob", ops.BROKER_ANSWER, w.AnswerRequest(question_id=r.question_id, answer=["pg", "sqlite"]))
    ans = await bus.recv("alice")
    assert ans[0].sender == "bob" and "pg, sqlite" in ans[0].body
    q = (await bus.operator(ops.QUESTIONS_LIST, w.QuestionsListRequest(open_only=False))).questions
    assert q[0].answer == ["pg", "sqlite"] and q[0].answered_by == "bob"


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (w.AskRequest(question=""), "bad_request"),
        (w.AskRequest(question="q", to="nobody"), "unknown_recipient"),
        (w.AskRequest(question="q", to="alice"), "bad_request"),
        (w.AskRequest(question="q", to="No!"), "bad_name"),
        (w.AskRequest(question="q", ttl_s=0), "bad_request"),
        (w.AskRequest(question="q", ttl_s=-1), "bad_request"),
        (w.AskRequest(question="q", multi=True), "bad_request"),
        (w.AskRequest(question="q", options=["a"] * 40), "too_large"),
        (w.AskRequest(question="x" * 70000), "too_large"),
    ],
)
async def test_ask_errors(bus: Bus, req: w.AskRequest, code: str) -> None:
    with pytest.raises(HiveError) as e:
        await bus.call("alice", ops.BROKER_ASK, req)
    assert e.value.code == code


async def test_answer_errors(bus: Bus) -> None:
    r = await bus.call("alice", ops.BROKER_ASK, w.AskRequest(question="q?", to="bob"))
    for qid, answer, code in [
        ("999", "x", "not_found"),
        ("abc", "x", "bad_request"),
        (r.question_id, "", "bad_request"),
        (r.question_id, ["a"], "bad_request"),  # not multi
    ]:
        with pytest.raises(HiveError) as e:
            await bus.call("bob", ops.BROKER_ANSWER, w.AnswerRequest(question_id=qid, answer=answer))
        assert e.value.code == code


async def test_ttl_is_capped_and_expiry_answers_expired(broker: BrokerService, bus: Bus) -> None:
    r = await bus.call("alice", ops.BROKER_ASK, w.AskRequest(question="q?", ttl_s=10 * 86400))
    assert r.deadline_at is not None and r.deadline_at - time.time() <= 6 * 3600 + 1
    short = await bus.call("alice", ops.BROKER_ASK, w.AskRequest(question="quick?", ttl_s=0.2))

    async def expired() -> list[w.Message]:
        return await bus.recv("alice")

    got = await eventually(expired)
    assert [(m.kind, m.body, m.in_reply_to) for m in got] == [("expired", "[expired]", short.question_id)]
    assert any(x.reason == "answer" and x.ref == short.question_id for x in bus.wakes_for("alice"))
    q = (await bus.operator(ops.QUESTIONS_LIST, w.QuestionsListRequest(open_only=False))).questions
    assert {x.question_id: x.answer for x in q}[short.question_id] == "[expired]"
    # the capped one expires too, exactly once, when its time comes
    assert await broker.background.scheduler_pass(time.time() + 7 * 3600) == 1
    assert await broker.background.scheduler_pass(time.time() + 7 * 3600) == 0


# --- reminders -------------------------------------------------------------------
async def test_reminder_fires_and_wakes(bus: Bus) -> None:
    r = await bus.call("alice", ops.BROKER_REMIND, w.RemindRequest(body="check CI", in_s=0.2, file_path="/tmp/x"))
    assert (await bus.counts("alice")).pending_reminders == 1

    async def fired() -> list[w.Message]:
        return await bus.recv("alice")

    got = await eventually(fired)
    assert got[0].kind == "reminder" and "check CI" in got[0].body and "/tmp/x" in got[0].body
    assert any(x.reason == "reminder" and x.ref == r.reminder_id for x in bus.wakes_for("alice"))
    assert (await bus.counts("alice")).pending_reminders == 0


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (w.RemindRequest(body="x"), "bad_request"),
        (w.RemindRequest(body="x", in_s=1, at=time.time()), "bad_request"),
        (w.RemindRequest(body="", in_s=1), "bad_request"),
        (w.RemindRequest(body="x", in_s=-5), "bad_request"),
        (w.RemindRequest(body="x", at=1e300), "bad_request"),
        (w.RemindRequest(body="x", in_s=10 * 365 * 86400), "bad_request"),
    ],
)
async def test_remind_errors(bus: Bus, req: w.RemindRequest, code: str) -> None:
    with pytest.raises(HiveError) as e:
        await bus.call("alice", ops.BROKER_REMIND, req)
    assert e.value.code == code


async def test_reminder_backlog_in_bounded_batches(broker: BrokerService, bus: Bus) -> None:
    from hive_broker import reminders
    from hive_broker.effects import Effects

    now = time.time()

    def schedule(conn: object) -> None:
        for i in range(250):
            reminders.remind(conn, Effects(), "bob", w.RemindRequest(body=f"r{i}", at=now + 3600), now)  # type: ignore[arg-type]

    await broker.db.write(schedule)
    fired = await broker.background.scheduler_pass(now + 7200)
    assert fired == 250
    assert await broker.background.scheduler_pass(now + 7200) == 0
    got = await bus.recv("bob", max=32)
    assert len(got) == 32 and all(m.kind == "reminder" for m in got)


# --- approvals -------------------------------------------------------------------
async def test_approval_flow(bus: Bus) -> None:
    r = await bus.call("manager", ops.BROKER_APPROVE, w.ApproveRequest(kind="apply_commit", agent="alice",
                                                                       commit_ref="ABCDEF1"))
    again = await bus.call("manager", ops.BROKER_APPROVE, w.ApproveRequest(kind="apply_commit", agent="alice",
                                                                           commit_ref="abcdef1"))
    assert again.approval_id == r.approval_id  # one pending entry per request
    pending = await bus.operator(ops.APPROVALS_LIST, w.ApprovalsListRequest())
    assert [(a.agent, a.kind, a.commit_ref, a.requested_by, a.status) for a in pending.approvals] == [
        ("alice", "apply_commit", "abcdef1", "manager", "pending")
    ]
    await eventually(lambda: _async([c for c in bus.changes if c.table == "approvals"]))
    res = await bus.operator(ops.APPROVALS_RESOLVE, w.ResolveRequest(approval_id=r.approval_id, decision="approve",
                                                                     note="lgtm"))
    assert res.status == "approved" and res.resolved_at is not None
    await eventually(lambda: _async([x for x in bus.wakes_for("manager") if x.reason == "approval"]))
    got = await bus.recv("manager")
    assert got[0].kind == "approval" and "approved" in got[0].body
    with pytest.raises(HiveError) as e:
        await bus.operator(ops.APPROVALS_RESOLVE, w.ResolveRequest(approval_id=r.approval_id, decision="deny"))
    assert e.value.code == "conflict"
    with pytest.raises(HiveError) as e:
        await bus.operator(ops.APPROVALS_RESOLVE, w.ResolveRequest(approval_id="4242", decision="deny"))
    assert e.value.code == "not_found"
    everything = await bus.operator(ops.APPROVALS_LIST, w.ApprovalsListRequest(status="all"))
    assert len(everything.approvals) == 1


@pytest.mark.parametrize(
    ("agent", "req", "code"),
    [
        ("alice", w.ApproveRequest(kind="spawn", agent="bob"), "forbidden"),
        ("alice", w.ApproveRequest(kind="apply_commit", agent="alice"), "bad_request"),
        ("alice", w.ApproveRequest(kind="apply_commit", agent="alice", commit_ref="abc"), "bad_request"),
        ("alice", w.ApproveRequest(kind="apply_commit", agent="alice", commit_ref="g" * 7), "bad_request"),
        ("alice", w.ApproveRequest(kind="apply_commit", agent="alice", commit_ref="a" * 41), "bad_request"),
        ("manager", w.ApproveRequest(kind="spawn", agent="Bad_Name"), "bad_name"),
        ("manager", w.ApproveRequest(kind="spawn", agent="operator"), "bad_name"),
    ],
)
async def test_approve_errors(bus: Bus, agent: str, req: w.ApproveRequest, code: str) -> None:
    with pytest.raises(HiveError) as e:
        await bus.call(agent, ops.BROKER_APPROVE, req)
    assert e.value.code == code


async def test_agent_may_request_for_itself_and_deny(bus: Bus) -> None:
    r = await bus.call("alice", ops.BROKER_APPROVE, w.ApproveRequest(kind="apply_commit", agent="alice",
                                                                     commit_ref="a" * 40))
    a = await bus.operator(ops.APPROVALS_RESOLVE, w.ResolveRequest(approval_id=r.approval_id, decision="deny"))
    assert a.status == "denied"
    assert "denied" in (await bus.recv("alice"))[0].body


# --- loose ends -------------------------------------------------------------------
async def test_loose_ends_and_cancel(bus: Bus) -> None:
    ap = await bus.call("alice", ops.BROKER_APPROVE, w.ApproveRequest(kind="init_config", agent="alice"))
    q = await bus.call("alice", ops.BROKER_ASK, w.AskRequest(question="?"))
    rem = await bus.call("alice", ops.BROKER_REMIND, w.RemindRequest(body="later", in_s=3600))
    await bus.call("bob", ops.BROKER_REMIND, w.RemindRequest(body="bob's", in_s=3600))
    le = await bus.call("alice", ops.BROKER_LOOSE_ENDS, w.LooseEndsRequest())
    assert [a.approval_id for a in le.approvals] == [ap.approval_id]
    assert [x.question_id for x in le.questions] == [q.question_id]
    assert [x.reminder_id for x in le.reminders] == [rem.reminder_id]
    everyone = await bus.call("manager", ops.BROKER_LOOSE_ENDS, w.LooseEndsRequest())
    assert len(everyone.reminders) == 2
    # bob cannot cancel alice's things
    for kind, id_ in (("approval", ap.approval_id), ("question", q.question_id), ("reminder", rem.reminder_id)):
        with pytest.raises(HiveError) as e:
            await bus.call("bob", ops.BROKER_CANCEL_LOOSE_END, w.CancelLooseEndRequest(kind=kind, id=id_))
        assert e.value.code == "forbidden"
        await bus.call("alice", ops.BROKER_CANCEL_LOOSE_END, w.CancelLooseEndRequest(kind=kind, id=id_))
        with pytest.raises(HiveError) as e:
            await bus.call("alice", ops.BROKER_CANCEL_LOOSE_END, w.CancelLooseEndRequest(kind=kind, id=id_))
        assert e.value.code == "conflict"
    le = await bus.call("alice", ops.BROKER_LOOSE_ENDS, w.LooseEndsRequest())
    assert (le.approvals, le.questions, le.reminders) == ([], [], [])
    for kind in ("approval", "question", "reminder"):
        with pytest.raises(HiveError) as e:
            await bus.call("alice", ops.BROKER_CANCEL_LOOSE_END, w.CancelLooseEndRequest(kind=kind, id="777"))
        assert e.value.code == "not_found"


# --- retention ---------------------------------------------------------------------
async def test_retention_keeps_unacked(broker: BrokerService, bus: Bus) -> None:
    acked = await bus.send("alice", "bob", "old and done")
    await bus.recv("bob")
    await bus.ack("bob", [acked.id])
    await bus.send("alice", "bob", "old, in flight")
    await bus.recv("bob")
    await bus.send("alice", "bob", "old, never delivered")
    q = await bus.call("alice", ops.BROKER_ASK, w.AskRequest(question="kept?"))
    await bus.operator(ops.QUESTIONS_ANSWER, w.OperatorAnswerRequest(question_id=q.question_id, answer="yes"))
    future = time.time() + 31 * 86400
    assert await broker.background.retention_pass(future) == 1
    left = await bus.operator(ops.MESSAGES_LIST, w.MessagesListRequest(agent="bob"))
    assert sorted(m.body for m in left.messages) == ["old, in flight", "old, never delivered"]
    found = await bus.operator(ops.MESSAGES_SEARCH, w.MessagesSearchRequest(query="done"))
    assert found.messages == []
    qs = await bus.operator(ops.QUESTIONS_LIST, w.QuestionsListRequest(open_only=False))
    assert len(qs.questions) == 1
    assert await broker.background.retention_pass(time.time()) == 0


async def test_deployer_outcome_updates_the_approval(bus: Bus) -> None:
    from hivewire import codec, subjects
    from hivewire.wire.deployer import DeployEvent

    r = await bus.call("manager", ops.BROKER_APPROVE, w.ApproveRequest(kind="apply_commit", agent="alice",
                                                                       commit_ref="cafe123"))
    await bus.operator(ops.APPROVALS_RESOLVE, w.ResolveRequest(approval_id=r.approval_id, decision="approve"))
    await bus.transport.publish(subjects.deployer_deploy("alice"), b"{not json")  # ignored, no crash
    await bus.transport.publish(subjects.deployer_deploy("alice"), codec.encode(
        DeployEvent(agent="alice", id="d1", approval_id=r.approval_id, outcome="failed", error="build broke")))

    async def status() -> str | None:
        a = await bus.operator(ops.APPROVALS_LIST, w.ApprovalsListRequest(status="all"))
        return a.approvals[0].status if a.approvals[0].status == "failed" else None

    await eventually(status)
    a = (await bus.operator(ops.APPROVALS_LIST, w.ApprovalsListRequest(status="failed"))).approvals
    assert a[0].note is not None and "build broke" in a[0].note
