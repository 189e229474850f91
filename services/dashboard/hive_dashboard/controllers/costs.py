"""`/api/costs`, `/api/budgets`, `/api/agents/<a>/spend|resume`: the cost ledger and budgets (docs/costs.md)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from hive_dashboard.auth import api_guard
from hive_dashboard.controllers.common import act
from hive_dashboard.costcharts import spend_chart
from hive_dashboard.deps import UpDep
from hive_dashboard.schemas import ActionResult
from hivewire.names import validate_agent_name
from hivewire.wire import broker as w
from hivewire.wire import ops
from hivewire.wire.common import Empty

Name = Annotated[str, PathParameter(min_length=1, max_length=64, description="an agent name")]
DAY = 86400


class BudgetBody(msgspec.Struct, kw_only=True):
    agent: str | None = None
    swarm: bool = False
    usd: float | None = None
    tokens: int | None = None
    per: str = "day"


class CostsController(Controller):
    path = "/api"
    guards = [api_guard]
    tags = ["costs"]

    @get("/costs", summary="Dollars and tokens from the ledger, grouped")
    async def costs(self, up: UpDep,
                    by: Annotated[str, QueryParameter(pattern="^(agent|model|day|session)$")] = "agent",
                    days: Annotated[int, QueryParameter(ge=0, le=366)] = 0) -> w.CostsReply:
        since = _today() - (days - 1) * DAY if days else None
        return await up.request(ops.LEDGER_COSTS, w.CostsRequest(by=by, since=since))  # type: ignore[arg-type]

    @get("/costs/chart", summary="Spend per UTC day by model or agent (inline SVG)")
    async def chart(self, up: UpDep, by: Annotated[str, QueryParameter(pattern="^(model|agent)$")] = "model",
                    days: Annotated[int, QueryParameter(ge=1, le=90)] = 14) -> dict[str, Any]:
        since = _today() - (days - 1) * DAY
        rep = await up.request(ops.LEDGER_COSTS, w.CostsRequest(by="day", then=by, since=since))  # type: ignore[arg-type]
        day_keys = [time.strftime("%Y-%m-%d", time.gmtime(since + i * DAY)) for i in range(days)]
        return {"svg": spend_chart(rep.rows, day_keys), "total_usd": rep.total_usd}

    @get("/budgets", summary="Every budget with this period's spend")
    async def budgets(self, up: UpDep) -> w.BudgetShowReply:
        return await up.request(ops.BUDGET_SHOW, Empty())

    @post("/budgets", summary="Set an agent's or the swarm's budget")
    async def set_budget(self, data: JSONBody[BudgetBody], up: UpDep) -> ActionResult:
        req = w.BudgetSetRequest(agent=data.agent or None, swarm=data.swarm, usd=data.usd, tokens=data.tokens,
                                 per=data.per)  # type: ignore[arg-type]
        return await act("budget set", up.request(ops.BUDGET_SET, req))

    @post("/budgets/clear", summary="Clear an agent's or the swarm's budget")
    async def clear_budget(self, data: JSONBody[BudgetBody], up: UpDep) -> ActionResult:
        req = w.BudgetClearRequest(agent=data.agent or None, swarm=data.swarm)
        return await act("budget cleared", up.request(ops.BUDGET_CLEAR, req))

    @get("/agents/{name:str}/spend",
         summary="Dollars and tokens: last turn, today (UTC), all time; and its status (runaway, over_budget, ...)")
    async def spend(self, name: Name, up: UpDep) -> dict[str, Any]:
        agent = validate_agent_name(name, allow_reserved=True)
        out: dict[str, Any] = {"last_turn": None, "status": None}
        for key, since in (("today", _today()), ("all_time", None)):
            rep = await up.request(ops.LEDGER_COSTS, w.CostsRequest(agent=agent, since=since))
            out[key] = {"usd": rep.total_usd, "tokens": rep.total_tokens, "turns": rep.turns}
        try:
            st = await up.request(ops.CTL_STATE, Empty(), agent=agent)
            out["last_turn"] = {"usd": st.cost_usd, "tokens": st.cost_tokens}
            out["status"] = st.status
        except Exception:  # the agent is not running: the ledger's figures still stand
            pass
        return out

    @post("/agents/{name:str}/resume", summary="Lift a runaway park (ctl.resume)")
    async def resume(self, name: Name, up: UpDep) -> ActionResult:
        agent = validate_agent_name(name, allow_reserved=True)
        return await act("resume", up.agent_request(ops.CTL_RESUME, Empty(), agent=agent))  # offline: 409


def _today() -> float:
    now = time.time()
    return now - now % DAY
