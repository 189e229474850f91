"""`/api`: the overview, approvals, questions and messages (broker operator subjects)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from hive_dashboard import approvals as deploy_diffs
from hive_dashboard.auth import api_guard
from hive_dashboard.controllers.common import act
from hive_dashboard.deps import OverviewDep, UpDep
from hive_dashboard.schemas import ActionResult, AnswerBody, Overview, ResolveBody, SendBody
from hivewire.errors import HiveError
from hivewire.names import OPERATOR, validate_agent_name
from hivewire.wire import ops
from hivewire.wire.broker import (
    ApprovalsListReply,
    ApprovalsListRequest,
    MessagesListReply,
    MessagesListRequest,
    MessagesSearchRequest,
    OperatorAnswerRequest,
    ResolveRequest,
    SendRequest,
)

Id = Annotated[str, PathParameter(min_length=1, max_length=200, description="an id from the broker")]


class BrokerController(Controller):
    path = "/api"
    guards = [api_guard]
    tags = ["broker"]

    @get("/overview", summary="Everything the home page shows")
    async def overview(self, ob: OverviewDep) -> Overview:
        return await ob.build()

    @get("/approvals", summary="Approvals (pending by default)")
    async def approvals(
        self, up: UpDep,
        status: Annotated[str, QueryParameter(pattern="^(pending|approved|denied|failed|deployed|all)$")] = "pending",
    ) -> ApprovalsListReply:
        req = ApprovalsListRequest(status=status, limit=200)  # type: ignore[arg-type]
        return await up.request(ops.APPROVALS_LIST, req)

    @post("/approvals/{approval_id:str}/resolve", summary="Approve or deny, with an optional note")
    async def resolve(self, approval_id: Id, data: JSONBody[ResolveBody], up: UpDep, ob: OverviewDep) -> ActionResult:
        if data.decision == "approve" and not data.confirm_large:
            view = await ob.pending_approval(approval_id)
            if view is not None and view.confirm_required:
                raise HiveError("bad_request", deploy_diffs.refusal(view))
        req = ResolveRequest(approval_id=approval_id, decision=data.decision, note=data.note or None)
        return await act(data.decision, up.request(ops.APPROVALS_RESOLVE, req))

    @post("/questions/{question_id:str}/answer", summary="Answer an operator question (free text or options)")
    async def answer(self, question_id: Id, data: JSONBody[AnswerBody], up: UpDep) -> ActionResult:
        req = OperatorAnswerRequest(question_id=question_id, answer=data.answer)
        return await act("answer", up.request(ops.QUESTIONS_ANSWER, req))

    @get("/messages", summary="Message flow, newest last; `q` searches")
    async def messages(
        self, up: UpDep,
        agent: Annotated[str | None, QueryParameter(max_length=31)] = None,
        q: Annotated[str | None, QueryParameter(min_length=1, max_length=500)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> MessagesListReply:
        if agent is not None:
            validate_agent_name(agent, allow_reserved=True)
        if q:
            req = MessagesSearchRequest(query=q, agent=agent, limit=limit)
            return await up.request(ops.MESSAGES_SEARCH, req)
        return await up.request(ops.MESSAGES_LIST, MessagesListRequest(agent=agent, limit=limit))

    @post("/messages", summary="Send a message as the operator")
    async def send(self, data: JSONBody[SendBody], up: UpDep) -> ActionResult:
        req = SendRequest(to=data.to, body=data.body, in_reply_to=data.in_reply_to)
        return await act("send", up.request(ops.BROKER_SEND, req, agent=OPERATOR))
