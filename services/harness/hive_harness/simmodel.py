"""A Messages-API *simulator*: answers Claude Code from a script, not a model.

This is a test and demo tool (`hive sim-model`), never a backend: every reply
is scripted. It speaks enough of the Anthropic Messages API for the real
`claude` CLI to run turns against it (`ANTHROPIC_BASE_URL=<url>`):

- `POST /v1/messages` (streaming SSE and plain JSON), answering with scripted
  text, `tool_use` blocks, usage numbers, or HTTP errors (429, 500, 401 with an
  `error_code`, ...);
- subscription usage limits: `Step(kind="usage_limit", reset_at=<unix s>)` answers
  429 with the `anthropic-ratelimit-unified-*` headers the CLI reads on its OAuth
  path (`unified_headers`); `Step(ratelimit=...)` adds them to any answer;
- a stream that stalls: `Step(stall_after=N)` sends the first N SSE events of its
  answer, then nothing more while keeping the connection open (until the client
  goes or `stall_s` passes);
- `POST /v1/messages/count_tokens`;
- anything else the CLI probes at start gets a harmless `{}`-ish 200/404.

A script is a queue of `Step`s. Each request to /v1/messages takes the first
step whose `match` (a substring of the raw request body) fits, or falls back
to a default reply ("ok", or "done" after a tool result). Side requests the
CLI makes on its own (titles, quota probes: requests without tools) never
consume steps unless a step matches them explicitly with `side=True`.

Pure asyncio and stdlib: it runs in its own thread so tests can drive it from
any event loop, and as a process via `hive sim-model`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

SIMULATOR = "hive-sim-model (simulator)"


@dataclass
class Step:
    """One scripted answer. `kind`: text | tool_use | error | prompt_too_long | usage_limit."""

    kind: str = "text"
    text: str = "ok"
    tool_name: str = ""
    tool_input: dict[str, Any] = field(default_factory=dict)
    status: int = 429
    usage: dict[str, int] | None = None
    delay_s: float = 0.0
    match: str | None = None
    side: bool = False
    context_window: int | None = None  # informational; the CLI decides what it reports
    message: str | None = None  # an error's message
    error_code: str | None = None  # an error's `error.details.error_code` (e.g. token_expired)
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    reset_at: float | None = None  # usage_limit: when the window resets (unix s)
    ratelimit: dict[str, Any] | None = None  # unified_headers(**ratelimit) on this answer
    stall_after: int | None = None  # SSE events sent before the stream stalls
    stall_s: float = 600.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    step: Step | None
    ts: float


class Script:
    """A thread-safe queue of steps plus a record of every request seen."""

    def __init__(self, steps: list[Step] | None = None) -> None:
        self._lock = threading.Lock()
        self.steps: list[Step] = list(steps or [])
        self.requests: list[Recorded] = []

    def add(self, *steps: Step) -> None:
        with self._lock:
            self.steps.extend(steps)

    def take(self, raw: str, is_main: bool) -> Step | None:
        with self._lock:
            for i, s in enumerate(self.steps):
                if (s.side or is_main) and (s.match is None or s.match in raw):
                    return self.steps.pop(i)
        return None

    def record(self, r: Recorded) -> None:
        with self._lock:
            self.requests.append(r)

    def main_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/v1/messages") and _is_main(r.body)]


def _is_main(body: dict[str, Any] | None) -> bool:
    return bool(body and body.get("tools"))


def _last_user_has_tool_result(body: dict[str, Any]) -> bool:
    # newer CLIs (2.1.3xx) put `system`-role messages after the last user turn
    msgs = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not msgs:
        return False
    content = msgs[-1].get("content")
    return isinstance(content, list) and any(isinstance(c, dict) and c.get("type") == "tool_result" for c in content)


def _default_usage(raw: str) -> dict[str, int]:
    return {"input_tokens": max(1, len(raw) // 40), "output_tokens": 5,
            "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def _blocks(step: Step) -> list[dict[str, Any]]:
    if step.kind == "tool_use":
        blocks: list[dict[str, Any]] = []
        if step.text and step.text != "ok":
            blocks.append({"type": "text", "text": step.text})
        blocks.append({"type": "tool_use", "id": "toolu_sim_" + uuid.uuid4().hex[:16],
                       "name": step.tool_name, "input": step.tool_input})
        return blocks
    return [{"type": "text", "text": step.text}]


def _message(model: str, step: Step, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "msg_sim_" + uuid.uuid4().hex[:16], "type": "message", "role": "assistant", "model": model,
        "content": _blocks(step), "stop_reason": "tool_use" if step.kind == "tool_use" else "end_turn",
        "stop_sequence": None, "usage": usage,
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _stream(msg: dict[str, Any]) -> list[bytes]:
    usage = msg["usage"]
    start = {**msg, "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}
    out = [_sse("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(msg["content"]):
        if block["type"] == "text":
            out.append(_sse("content_block_start", {"type": "content_block_start", "index": i,
                                                    "content_block": {"type": "text", "text": ""}}))
            out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "text_delta", "text": block["text"]}}))
        else:
            out.append(_sse("content_block_start", {"type": "content_block_start", "index": i,
                                                    "content_block": {**block, "input": {}}}))
            out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(block["input"])}}))
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(_sse("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                                      "usage": {"output_tokens": usage["output_tokens"]}}))
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return out


def _error_body(status: int, kind: str | None = None, message: str | None = None,
                error_code: str | None = None) -> dict[str, Any]:
    etype = kind or {429: "rate_limit_error", 401: "authentication_error", 529: "overloaded_error",
                     400: "invalid_request_error"}.get(status, "api_error")
    err: dict[str, Any] = {"type": etype, "message": message or f"{SIMULATOR}: scripted {status}"}
    if error_code:
        err["details"] = {"error_code": error_code}
    return {"type": "error", "error": err}


def unified_headers(status: str = "allowed", reset_at: float | None = None, claim: str = "five_hour",
                    utilization: float = 0.5, seven_day_utilization: float = 0.1) -> dict[str, str]:
    """The subscription (OAuth) usage-limit headers of the Messages API, as the CLI reads them:
    `status` allowed | allowed_warning | rejected; the 5-hour window resets at `reset_at`."""
    reset = int(reset_at if reset_at is not None else time.time() + 3600)
    week = int(time.time() + 7 * 86400)
    short = {"five_hour": "5h", "seven_day": "7d"}.get(claim, "5h")
    h = {"anthropic-ratelimit-unified-status": status,
         "anthropic-ratelimit-unified-reset": str(reset if short == "5h" else week),
         "anthropic-ratelimit-unified-representative-claim": claim,
         "anthropic-ratelimit-unified-5h-status": status if short == "5h" else "allowed",
         "anthropic-ratelimit-unified-5h-reset": str(reset),
         "anthropic-ratelimit-unified-5h-utilization": str(utilization),
         "anthropic-ratelimit-unified-7d-status": status if short == "7d" else "allowed",
         "anthropic-ratelimit-unified-7d-reset": str(week),
         "anthropic-ratelimit-unified-7d-utilization": str(seven_day_utilization)}
    return h


class SimModel:
    """The simulator server. `start()` runs it in a thread; `url` is its base."""

    def __init__(self, script: Script | None = None, host: str = "127.0.0.1", port: int = 0,
                 verbose: bool = False) -> None:
        self.script = script or Script()
        self.host, self.port = host, port
        self.verbose = verbose
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- lifecycle ------------------------------------------------------------
    def start(self) -> SimModel:
        self._thread = threading.Thread(target=self._run, name="sim-model", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("simulator did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._bind())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _bind(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            me = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not me]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await asyncio.sleep(0)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if self._thread is not None:
            self._thread.join(5)

    async def serve_forever(self) -> None:
        """For `hive sim-model`: serve in the current loop."""
        await self._bind()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    # --- HTTP -----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length") or 0)
                raw = (await reader.readexactly(n)).decode() if n else ""
                keep = await self._respond(method, path.split("?")[0], headers, raw, writer, reader)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            # a stop cancels handlers: end quietly (asyncio logs a cancelled handler's exception)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                writer.close()
                await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: dict[str, Any],
                    extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        hdrs = {"content-type": "application/json", "content-length": str(len(data)),
                "request-id": "req_sim_" + uuid.uuid4().hex[:12], **(extra or {})}
        head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        writer.write(head.encode() + data)
        await writer.drain()

    async def _respond(self, method: str, path: str, headers: dict[str, str], raw: str,
                       writer: asyncio.StreamWriter, reader: asyncio.StreamReader | None = None) -> bool:
        body: dict[str, Any] | None = None
        if raw:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        if self.verbose:
            print(f"[sim-model] {method} {path} tools={bool(body and body.get('tools'))}", flush=True)
        if method == "POST" and path == "/v1/messages/count_tokens":
            self.script.record(Recorded(method, path, headers, body, None, time.time()))
            await self._send(writer, 200, {"input_tokens": max(1, len(raw) // 40)})
            return True
        if method in ("HEAD", "GET") and path == "/":
            self.script.record(Recorded(method, path, headers, body, None, time.time()))
            if method == "HEAD":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
            else:
                await self._send(writer, 200, {"simulator": SIMULATOR})
            return True
        if method != "POST" or path != "/v1/messages" or body is None:
            self.script.record(Recorded(method, path, headers, body, None, time.time()))
            await self._send(writer, 404, _error_body(404, "not_found_error", f"{SIMULATOR}: no {path}"))
            return True
        is_main = _is_main(body)
        step = self.script.take(raw, is_main)
        self.script.record(Recorded(method, path, headers, body, step, time.time()))
        if step is None:
            step = Step(text="done." if _last_user_has_tool_result(body) else "ok")
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        rl = unified_headers(**step.ratelimit) if step.ratelimit else {}
        if step.kind == "usage_limit":
            reset = step.reset_at if step.reset_at is not None else time.time() + 3600
            hdrs = {**unified_headers("rejected", reset, utilization=1.0), **step.headers}
            await self._send(writer, 429, _error_body(429, message=step.message or "rate_limit_error"), hdrs)
            return True
        if step.kind == "error":
            extra = {"retry-after": "0", "x-should-retry": "true" if step.status in (429, 500, 529) else "false",
                     **rl, **step.headers}
            await self._send(writer, step.status, _error_body(step.status, None, step.message, step.error_code),
                             extra)
            return True
        if step.kind == "prompt_too_long":
            await self._send(writer, 400, _error_body(400, "invalid_request_error",
                                                      "prompt is too long: 210000 tokens > 200000 maximum"))
            return True
        usage = {**_default_usage(raw), **(step.usage or {})}
        msg = _message(str(body.get("model", "sim")), step, usage)
        if not body.get("stream"):
            await self._send(writer, 200, msg, {**rl, **step.headers})
            return True
        hdrs = {"content-type": "text/event-stream", "cache-control": "no-cache",
                "request-id": f"req_sim_{uuid.uuid4().hex[:12]}", **rl, **step.headers, "connection": "close"}
        writer.write(("HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode())
        chunks = _stream(msg)
        if step.stall_after is not None:
            chunks = chunks[: step.stall_after]
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        if step.stall_after is not None and reader is not None:  # stalled: the connection stays open, silent
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(reader.read(), step.stall_s)  # until the client goes
        return False


def load_script(path: str) -> Script:
    with open(path) as f:
        data = json.load(f)
    steps = data.get("steps", data) if isinstance(data, dict) else data
    return Script([Step.from_dict(s) for s in steps])
