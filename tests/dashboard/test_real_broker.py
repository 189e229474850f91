"""The dashboard against the REAL hive-broker (deployer, backup and harnesses are FAKES)."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from playwright.async_api import Page, expect

from hivewire.service import HiveClient
from hivewire.wire import ops
from hivewire.wire.broker import (
    ApprovalsListReply,
    ApprovalsListRequest,
    ApproveRequest,
    AskRequest,
    QuestionsListRequest,
    RecvRequest,
    RegistryRequest,
    SendRequest,
)
from tests.dashboard.conftest import TOKEN, Dashboard, Stack
from tests.dashboard.test_e2e import log_in
from tests.support.procs import wait_for

Client = AsyncTestClient  # type: ignore[type-arg]


async def seed(stack: Stack) -> tuple[str, str]:
    """Register the agents, then have the manager ask for an approval and alice ask the operator."""
    c = HiveClient(stack.transport)

    async def go() -> tuple[str, str]:
        for name in ("alice", "manager"):
            await c.request(ops.REGISTRY_UPSERT, RegistryRequest(name=name))
        ap = await c.request(ops.BROKER_APPROVE,
                             ApproveRequest(kind="apply_commit", agent="alice", commit_ref="abcdef1"), agent="manager")
        q = await c.request(ops.BROKER_ASK,
                            AskRequest(question="Which suites?", options=["unit", "integration", "e2e"], multi=True),
                            agent="alice")
        await c.request(ops.BROKER_SEND, SendRequest(to="operator", body="hi from alice"), agent="alice")
        return ap.approval_id, q.question_id

    return await stack.run(go())


async def approvals(stack: Stack) -> ApprovalsListReply:
    c = HiveClient(stack.transport)
    return await stack.run(c.request(ops.APPROVALS_LIST, ApprovalsListRequest(status="all")))


async def test_api_against_the_real_broker(client: Client, real_stack: Stack) -> None:
    approval_id, question_id = await seed(real_stack)
    h = {"Authorization": f"Bearer {TOKEN}"}
    ov = (await client.get("/api/overview", headers=h)).json()
    assert [a["approval"]["approval_id"] for a in ov["approvals"]] == [approval_id]
    assert [q["question_id"] for q in ov["questions"]] == [question_id]
    assert any(m["body"] == "hi from alice" for m in ov["inbox"])

    r = await client.post(f"/api/approvals/{approval_id}/resolve", json={"decision": "deny", "note": "not now"},
                          headers=h)
    assert r.status_code == 201, r.text
    got = (await approvals(real_stack)).approvals[0]
    assert (got.status, got.note) == ("denied", "not now")

    r = await client.post(f"/api/questions/{question_id}/answer", json={"answer": ["unit", "e2e"]}, headers=h)
    assert r.status_code == 201, r.text
    c = HiveClient(real_stack.transport)
    qs = await real_stack.run(c.request(ops.QUESTIONS_LIST, QuestionsListRequest(open_only=False)))
    assert qs.questions[0].answer in (["unit", "e2e"], msgspec.json.encode(["unit", "e2e"]).decode())

    r = await client.post("/api/messages", json={"to": "alice", "body": "from the operator"}, headers=h)
    assert r.status_code == 201, r.text
    r = await client.post("/api/messages", json={"to": "nobody", "body": "x"}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_recipient"

    async def alice_got_it() -> bool:
        got = await real_stack.run(c.request(ops.BROKER_RECV, RecvRequest(max=10), agent="alice"))
        return any(m.body == "from the operator" and m.sender == "operator" for m in got.messages)

    await wait_for(alice_got_it)


@pytest.mark.e2e
async def test_browser_approves_in_the_real_broker(page: Page, dashboard: Dashboard,
                                                   real_stack: Stack) -> None:
    approval_id, question_id = await seed(real_stack)
    await log_in(page, dashboard)
    ap = page.locator(f".approval[data-id='{approval_id}']")
    await ap.locator("input.note").fill("approved from the browser")
    # its commit is in no repo here: the diff cannot be shown, so approving needs the explicit tick
    await expect(ap.locator(".large-diff")).to_contain_text("could not be shown")
    await ap.locator("button.approve").click()
    await expect(page.locator("body")).to_contain_text("confirm_large")
    assert (await approvals(real_stack)).approvals[0].status == "pending"
    await ap.locator("input.confirm-large").check()
    await ap.locator("button.approve").click()
    await expect(page.locator("#approvals")).to_contain_text("nothing waiting for approval")

    async def recorded() -> bool:
        a = (await approvals(real_stack)).approvals[0]
        return a.status == "approved" and a.note == "approved from the browser"

    await wait_for(recorded)
    q = page.locator(f"form.question[data-id='{question_id}']")
    await q.get_by_label("integration").check()
    await q.get_by_label("e2e").check()
    await q.locator("button").click()
    await expect(page.locator("#questions")).to_contain_text("no open questions")
