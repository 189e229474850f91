"""`/api/agents`: one agent's state, history, stats and operator controls."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from hive_dashboard.auth import api_guard
from hive_dashboard.charts import ctx_chart_svg, summarize, turn_ctx
from hive_dashboard.controllers.common import act
from hive_dashboard.deps import HubDep, OverviewDep, UpDep
from hive_dashboard.schemas import (
    ActionResult,
    AgentView,
    HistoryView,
    LoginBody,
    ModelBody,
    PromptBody,
    SpawnBody,
    StatsView,
)
from hive_dashboard.upstream import Upstream
from hivewire.errors import HiveError
from hivewire.names import validate_agent_name
from hivewire.wire import ops
from hivewire.wire.agent import AgentState, HistoryRequest, LoginRequest, ModelRequest, PromptRequest
from hivewire.wire.common import Empty
from hivewire.wire.deployer import (
    AgentHistoryRequest,
    DestroyRequest,
    NameRequest,
    SpawnRequest,
    TurnStatsRequest,
)
from hivewire.wire.hosts import HostList, HostNameRequest

Name = Annotated[str, PathParameter(max_length=31, description="agent name")]


async def last_state(up: Upstream, name: str) -> AgentState | None:
    """What an agent whose harness is gone last reported: its newest turn row, read by the deployer."""
    try:
        rows = (await up.request(ops.DEPLOYER_TURN_STATS, TurnStatsRequest(name=name, limit=1))).turns
    except HiveError:
        return None
    if not rows:
        return None
    t = rows[-1]
    return AgentState(status="offline", turn_state="idle", turn_state_since=t.ended_at, model=t.model,
                      ctx_tokens=turn_ctx(t) or None, cost_tokens=t.input_tokens + t.output_tokens
                      + t.cache_read_input_tokens + t.cache_creation_input_tokens,
                      context_window=t.context_window or 200_000)
LIFECYCLE = {"revive": ops.DEPLOYER_REVIVE, "start": ops.DEPLOYER_START, "stop": ops.DEPLOYER_STOP,
             "restart": ops.DEPLOYER_RESTART, "kill": ops.DEPLOYER_KILL, "rebuild": ops.DEPLOYER_REBUILD}


async def host_of(up: Upstream, name: str) -> tuple[str | None, bool]:
    """The host that runs `name` and whether it is lost (issue 26; the deployer's hive.hosts.list)."""
    try:
        hosts: HostList = await up.request(ops.HOSTS_LIST, HostNameRequest(name=""), timeout=2.0)
    except Exception:  # no deployer, or an old one: the page goes without it
        return None, False
    h = next((x for x in hosts.hosts if name in x.agents), None)
    return (h.name, h.state == "lost") if h else (None, False)


class AgentsController(Controller):
    path = "/api/agents"
    guards = [api_guard]
    tags = ["agents"]

    @get("/", summary="Every agent with its badges")
    async def list_agents(self, ob: OverviewDep, up: UpDep) -> list[AgentView]:
        try:
            infos = {a.name: a for a in (await up.request(ops.DEPLOYER_LIST, Empty())).agents}
        except Exception:  # the deployer being down must not hide the agents we hear from
            infos = {}
        names = sorted({n for n, a in infos.items() if a.state != "destroyed"} | set(ob.hub.presence))
        return [ob.agent_view(n, infos.get(n), await ob.agent_state(n)) for n in names]

    @get("/{name:str}", summary="One agent's badges and state")
    async def agent(self, name: Name, ob: OverviewDep, up: UpDep) -> AgentView:
        validate_agent_name(name, allow_reserved=True)
        st = await ob.agent_state(name)
        if st is None and name not in ob.hub.badges:  # no harness answers: its last turn row, from the host
            st = await last_state(up, name)
        view = ob.agent_view(name, None, st)
        view.host, view.host_lost = await host_of(up, name)
        return view

    @get("/{name:str}/history", summary="The agent's recent live events (ctl.history; from its files when offline)")
    async def history(
        self, name: Name, up: UpDep,
        limit: Annotated[int, QueryParameter(ge=1, le=2000)] = 500,
        before_id: Annotated[int | None, QueryParameter(ge=0, le=2**62)] = None,
    ) -> HistoryView:
        name = validate_agent_name(name, allow_reserved=True)
        source = "harness"
        try:
            reply = await up.agent_request(ops.CTL_HISTORY, HistoryRequest(limit=limit, before_id=before_id),
                                           agent=name)
        except HiveError as err:
            if err.code not in ("conflict", "timeout"):  # offline, or not answering: its files on the host
                raise
            req = AgentHistoryRequest(name=name, limit=limit, before_id=before_id)
            try:
                reply = await up.request(ops.DEPLOYER_HISTORY, req)
            except HiveError as files_err:
                raise HiveError(err.code, f"{err.message}; and its files: {files_err.message}") from None
            source = "files"
        return HistoryView(agent=name, events=sorted(reply.events, key=lambda e: e.id), source=source)

    @get("/{name:str}/stats", summary="Turn stats and the ctx chart")
    async def stats(self, name: Name, hub: HubDep, up: UpDep) -> StatsView:
        validate_agent_name(name, allow_reserved=True)
        turns, source = list(hub.turns.get(name, [])), "live"
        if not turns:  # nothing seen since the dashboard started: the rows in its turn-stats.sqlite
            try:
                turns = (await up.request(ops.DEPLOYER_TURN_STATS, TurnStatsRequest(name=name, limit=200))).turns
                source = "files"
            except HiveError:
                pass
        return StatsView(agent=name, summary=summarize(turns), turns=turns[-200:], chart_svg=ctx_chart_svg(turns),
                         source=source)

    @post("/{name:str}/prompt", summary="Send the operator's words to the agent (ctl.prompt)")
    async def prompt(self, name: Name, data: JSONBody[PromptBody], up: UpDep) -> ActionResult:
        name = validate_agent_name(name, allow_reserved=True)
        return await act("prompt", up.agent_request(ops.CTL_PROMPT, PromptRequest(text=data.text), agent=name))

    @post("/{name:str}/model", summary="Switch the agent's model")
    async def model(self, name: Name, data: JSONBody[ModelBody], up: UpDep) -> ActionResult:
        name = validate_agent_name(name, allow_reserved=True)
        return await act("model", up.agent_request(ops.CTL_MODEL, ModelRequest(model=data.model), agent=name))

    @post("/{name:str}/compact", summary="Compact the agent's session")
    async def compact(self, name: Name, up: UpDep) -> ActionResult:
        name = validate_agent_name(name, allow_reserved=True)
        return await act("compact", up.agent_request(ops.CTL_COMPACT, Empty(), agent=name))

    @post("/{name:str}/cancel", summary="Cancel the running turn")
    async def cancel(self, name: Name, up: UpDep) -> ActionResult:
        name = validate_agent_name(name, allow_reserved=True)
        return await act("cancel", up.agent_request(ops.CTL_CANCEL, Empty(), agent=name))

    @post("/{name:str}/new-session", summary="Start the next turn in a fresh session")
    async def new_session(self, name: Name, up: UpDep) -> ActionResult:
        name = validate_agent_name(name, allow_reserved=True)
        return await act("new_session", up.agent_request(ops.CTL_NEW_SESSION, Empty(), agent=name))

    @post("/{name:str}/login", summary="The agent CLI's login flow: start, submit the code, cancel")
    async def login(self, name: Name, data: JSONBody[LoginBody], up: UpDep) -> ActionResult:
        name = validate_agent_name(name, allow_reserved=True)
        req = LoginRequest(action=data.action, code=data.code)
        return await act(f"login_{data.action}", up.agent_request(ops.CTL_LOGIN, req, agent=name, timeout=15.0))

    @post("/", summary="Spawn a new agent (deployer)")
    async def spawn(self, data: JSONBody[SpawnBody], up: UpDep) -> ActionResult:
        name = validate_agent_name(data.name)
        return await act("spawn", up.request(ops.DEPLOYER_SPAWN, SpawnRequest(name=name), timeout=30.0))

    @post("/{name:str}/lifecycle/{verb:str}", summary="revive, start, stop, restart, kill or rebuild")
    async def lifecycle(
        self, name: Name, verb: Annotated[str, PathParameter(pattern="^(revive|start|stop|restart|kill|rebuild)$")],
        up: UpDep,
    ) -> ActionResult:
        name = validate_agent_name(name, allow_reserved=True)
        if verb not in LIFECYCLE:
            raise HiveError("bad_request", f"unknown lifecycle verb {verb!r}")
        return await act(verb, up.request(LIFECYCLE[verb], NameRequest(name=name), timeout=30.0))

    @post("/{name:str}/destroy", summary="Destroy the agent; purge also deletes its state")
    async def destroy(self, name: Name, up: UpDep, purge: Annotated[bool, QueryParameter()] = False) -> ActionResult:
        name = validate_agent_name(name, allow_reserved=True)
        req = DestroyRequest(name=name, purge=purge)
        call = up.request(ops.DEPLOYER_DESTROY, req, timeout=30.0)
        return await act("purge" if purge else "destroy", call)
