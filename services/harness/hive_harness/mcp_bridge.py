"""The `hive` MCP tools: the agent's only channel to the hive.

They run in the harness, outside the agent's sandbox, on the harness's own
NATS connection (the agent's identity, which the sandbox never holds); the
agent CLI reaches them through `mcp_relay.js` and the harness's MCP socket
(`mcp_socket`). Each tool call becomes one broker / deployer request under the
agent's own subject token and returns a readable result, or a readable error.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from hivewire.errors import HiveError
from hivewire.names import MANAGER, validate_agent_name
from hivewire.service import HiveClient
from hivewire.wire import broker as wb
from hivewire.wire import deployer as wd
from hivewire.wire import ops
from hivewire.wire.op import Op

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

AGENT_TOOLS = ("send", "recv", "ask", "answer", "remind", "get_loose_ends", "cancel_loose_end", "whoami")
SEND_ATTEMPTS = 3
RETRYABLE = ("timeout", "unavailable")  # no reply, or no broker: the send may or may not be stored
MANAGER_TOOLS = ("request_init_config", "request_apply", "request_spawn", "kill", "start", "restart")
Req = TypeVar("Req")


def tool_names(agent: str) -> list[str]:
    """The MCP tool names the CLI must allow for this agent (`mcp__hive__*`)."""
    names = list(AGENT_TOOLS) + (list(MANAGER_TOOLS) if agent == MANAGER else [])
    return [f"mcp__hive__{n}" for n in names]


class Bridge:
    """The tools' side of the harness: `agent`'s requests on the harness's client.

    `on_received` hears the ids of messages the agent took itself with `recv`,
    so the turn loop acks them after the turn."""

    def __init__(self, agent: str, client: HiveClient, *, on_received: Callable[[list[str]], None] | None = None,
                 instance: str | None = None, send_timeout: float = 10.0, retry_backoff: float = 1.0) -> None:
        self.agent = validate_agent_name(agent, allow_reserved=True)
        self._client = client
        self.on_received = on_received
        self.instance = instance
        self.send_timeout, self.retry_backoff = send_timeout, retry_backoff

    async def client(self) -> HiveClient:
        return self._client

    async def call(self, op: Op[Req, Any], req: Req, *, timeout: float | None = None, attempts: int = 1,
                   **params: str) -> str:
        """One request, as readable text. With `attempts` > 1 a `timeout` or
        `unavailable` is retried (backing off): only for idempotent requests."""
        attempt = 1
        while True:
            try:
                c = await self.client()
                reply = await c.request(op, req, timeout=timeout, **params)
                return json.dumps(msgspec.to_builtins(reply), ensure_ascii=False)
            except HiveError as err:
                if err.code not in RETRYABLE or attempt >= attempts:
                    return f"error ({err.code}): {err.message}"
            except Exception as exc:  # the agent gets a readable error
                return f"error (unavailable): {type(exc).__name__}: {exc}"
            await asyncio.sleep(self.retry_backoff * attempt)
            attempt += 1

    async def broker(self, op: Op[Req, Any], req: Req, timeout: float | None = None) -> str:
        """One of the agent's own broker requests (`hive.broker.<agent>.<verb>`)."""
        return await self.call(op, req, timeout=timeout, agent=self.agent)

    async def send(self, req: wb.SendRequest) -> str:
        """A send that survives a slow or restarting broker: every attempt carries the
        same client id, so a send whose reply was lost (the broker committed, then
        died or answered too late) is retried and still stored once."""
        req = msgspec.structs.replace(req, id=req.id or f"mcp-{uuid.uuid4().hex}")
        return await self.call(ops.BROKER_SEND, req, timeout=self.send_timeout, attempts=SEND_ATTEMPTS,
                               agent=self.agent)

    async def deployer(self, op: Op[wd.NameRequest, wd.AgentInfo], name: str) -> str:
        """The manager's kill/start/restart of another agent."""
        if name == self.agent:
            return "error (forbidden): the manager may not kill/start/restart itself"
        try:
            validate_agent_name(name)
        except HiveError as err:
            return f"error ({err.code}): {err.message}"
        return await self.call(op, wd.NameRequest(name=name), timeout=60)


def received_ids(reply_json: str) -> list[str]:
    """The ids of the messages in a `recv` reply (none for an error text)."""
    if not reply_json.startswith("{"):
        return []
    return [str(m["id"]) for m in json.loads(reply_json).get("messages", [])]


class LazyServer:
    """The hive tools' MCP server, built when the first session (a CLI turn) connects.

    The `mcp` package (pydantic, its models) is ~36 MB of a harness's ~75 MB
    resident: an idle agent, or a harness pool whose agents are all idle, never
    loads it (bench/harness_rss)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._server: MCPServer | None = None

    def get(self) -> MCPServer:
        if self._server is None:
            self._server = _build(self.bridge)
        return self._server


def build_server(bridge: Bridge) -> LazyServer:
    return LazyServer(bridge)


def _build(bridge: Bridge) -> MCPServer:
    from mcp.server.mcpserver import MCPServer

    mcp: MCPServer = MCPServer(name="hive", instructions=f"Hive tools for agent {bridge.agent}.")

    @mcp.tool(description="Send a message to another agent, `operator`, or `*` (everyone).")
    async def send(to: str, body: str, in_reply_to: str | None = None) -> str:
        return await bridge.send(wb.SendRequest(to=to, body=body, in_reply_to=in_reply_to))

    @mcp.tool(description="Receive unread messages (marks them delivered; the harness acks after the turn).")
    async def recv(wait_s: float = 0.0, max: int = 10) -> str:
        max_wait = 60.0
        wait = min(max_wait, wait_s) if wait_s else 0.0
        req = wb.RecvRequest(max=max, wait_s=wait, instance=bridge.instance)
        out = await bridge.broker(ops.BROKER_RECV, req, timeout=max_wait + 5)
        ids = received_ids(out)
        if ids and bridge.on_received is not None:
            bridge.on_received(ids)
        return out

    @mcp.tool(description="Ask the operator (or a peer with `to`) a question; the answer arrives later as a wake.")
    async def ask(question: str, options: list[str] | None = None, multi: bool = False,
                  ttl_s: float | None = None, to: str | None = None) -> str:
        req = wb.AskRequest(question=question, options=options or [], multi=multi, ttl_s=ttl_s, to=to)
        return await bridge.broker(ops.BROKER_ASK, req)

    @mcp.tool(description="Answer a question that was addressed to you.")
    async def answer(question_id: str, answer: str) -> str:
        return await bridge.broker(ops.BROKER_ANSWER, wb.AnswerRequest(question_id=question_id, answer=answer))

    @mcp.tool(description="Set a reminder: wakes you with `body` after `in_s` seconds or at unix time `at`.")
    async def remind(body: str, in_s: float | None = None, at: float | None = None,
                     file_path: str | None = None) -> str:
        req = wb.RemindRequest(body=body, in_s=in_s, at=at, file_path=file_path)
        return await bridge.broker(ops.BROKER_REMIND, req)

    @mcp.tool(description="Your pending approvals, unanswered questions and reminders.")
    async def get_loose_ends() -> str:
        return await bridge.broker(ops.BROKER_LOOSE_ENDS, wb.LooseEndsRequest())

    @mcp.tool(description="Cancel a loose end: kind is approval, question or reminder.")
    async def cancel_loose_end(kind: str, id: str) -> str:
        if kind not in ("approval", "question", "reminder"):
            return "error (bad_request): kind must be approval, question or reminder"
        req = wb.CancelLooseEndRequest(kind=kind, id=id)  # type: ignore[arg-type]
        return await bridge.broker(ops.BROKER_CANCEL_LOOSE_END, req)

    @mcp.tool(description="Who you are in the hive.")
    async def whoami() -> str:
        return json.dumps({"agent": bridge.agent, "role": "manager" if bridge.agent == MANAGER else "agent"})

    if bridge.agent == MANAGER:

        @mcp.tool(description="Ask the operator to approve initialising agent `name`'s config repo.")
        async def request_init_config(name: str) -> str:
            return await bridge.broker(ops.BROKER_APPROVE, wb.ApproveRequest(kind="init_config", agent=name))

        @mcp.tool(description="Ask the operator to approve applying `commit_ref` of `agent`'s config.")
        async def request_apply(agent: str, commit_ref: str) -> str:
            req = wb.ApproveRequest(kind="apply_commit", agent=agent, commit_ref=commit_ref)
            return await bridge.broker(ops.BROKER_APPROVE, req)

        @mcp.tool(description="Ask the operator to approve spawning a new agent `name`.")
        async def request_spawn(name: str) -> str:
            return await bridge.broker(ops.BROKER_APPROVE, wb.ApproveRequest(kind="spawn", agent=name))

        @mcp.tool(description="Kill agent `name` (no approval; never yourself).")
        async def kill(name: str) -> str:
            return await bridge.deployer(ops.DEPLOYER_KILL, name)

        @mcp.tool(description="Start agent `name` (no approval; never yourself).")
        async def start(name: str) -> str:
            return await bridge.deployer(ops.DEPLOYER_START, name)

        @mcp.tool(description="Restart agent `name` (no approval; never yourself).")
        async def restart(name: str) -> str:
            return await bridge.deployer(ops.DEPLOYER_RESTART, name)

    return mcp
