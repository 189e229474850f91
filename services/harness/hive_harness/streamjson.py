"""Parse Claude Code's `--output-format stream-json` into LiveEvents and a turn summary.

Pure: feed it lines, read `events()` drafts and the `TurnSummary`. Token
accounting, exactly:

- ctx  = the last inference's prompt size: input + cache_read + cache_creation
  of the most recent `assistant` event's `message.usage`;
- cost = the turn's cumulative billed tokens: the `result` event's `usage`;
- cost_usd = `result.total_cost_usd`, per model `modelUsage.<model>.costUSD`
  (the CLI's own prices; Hive keeps no price table);
- the context window comes from `result.modelUsage.<model>.contextWindow`, else
  `HIVE_CONTEXT_WINDOW`, else 200000 (`effective_context_window`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONTEXT_WINDOW = 200_000
SUMMARY_LEN = 160
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @classmethod
    def from_dict(cls, d: Any) -> Usage:
        d = d if isinstance(d, dict) else {}
        return cls(**{k: _count(d.get(k)) for k in USAGE_FIELDS})

    @property
    def prompt_tokens(self) -> int:
        """What counts against the per-inference window: all three input fields."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def is_zero(self) -> bool:
        return self.total == 0


@dataclass
class TurnSummary:
    last: Usage = field(default_factory=Usage)  # last real inference (assistant event)
    cumulative: Usage = field(default_factory=Usage)  # result event
    api_context_window: int | None = None
    model: str | None = None
    session_id: str | None = None
    got_result: bool = False
    is_error: bool = False
    result_text: str = ""
    api_error_status: int | None = None
    rate_limited: bool = False
    prompt_too_long: bool = False
    auth_failed: bool = False
    compacted: bool = False
    post_compact_tokens: int | None = None
    tool_calls: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0  # result.total_cost_usd (the CLI's own pricing)
    model_costs: dict[str, float] = field(default_factory=dict)  # result.modelUsage.<model>.costUSD

    @property
    def ctx(self) -> int | None:
        """None until a real inference was seen (no misleading zero)."""
        return self.last.prompt_tokens if not self.last.is_zero() else None

    @property
    def cost(self) -> int:
        return self.cumulative.total

    @property
    def tool_call_count(self) -> int:
        return sum(self.tool_calls.values())


def _count(v: Any) -> int:
    """A token count from untrusted JSON: non-negative ints (and finite floats) only, else 0."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        return 0
    return max(0, int(v))


def _usd(v: Any) -> float:
    """A dollar amount from untrusted JSON: a finite non-negative number, else 0."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        return 0.0
    return max(0.0, float(v))


def effective_context_window(api_window: int | None, env_window: int | None) -> int:
    """The window watermarks are computed against."""
    if api_window and api_window > 0:
        return api_window
    if env_window and env_window > 0:
        return env_window
    return DEFAULT_CONTEXT_WINDOW


def one_line(s: str, n: int = SUMMARY_LEN) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def summarize_tool(name: str, inp: dict[str, Any]) -> str:
    """One line per tool use: `Bash $ ls`, `send → bob: hi`, `Read /x`."""
    short = name.removeprefix("mcp__hive__")
    if short == "send":
        return one_line(f"send → {inp.get('to', '?')}: {inp.get('body', '')}")
    if short == "ask":
        return one_line(f"ask {inp.get('to') or 'operator'}: {inp.get('question', '')}")
    if short == "remind":
        when = inp.get("in_s") or inp.get("at") or "?"
        return one_line(f"remind ({when}): {inp.get('body', '')}")
    if name == "Bash":
        return one_line(f"Bash $ {inp.get('command', '')}")
    for key in ("file_path", "path", "pattern", "url", "query", "name", "question_id"):
        if key in inp:
            return one_line(f"{short} {inp[key]}")
    return one_line(f"{short} {json.dumps(inp, ensure_ascii=False)}" if inp else short)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")
    return ""


def _is_too_long(text: str) -> bool:
    return "prompt is too long" in text.lower()


class StreamParser:
    """Feed stream-json lines; collect (kind, payload) event drafts and a summary."""

    def __init__(self) -> None:
        self.summary = TurnSummary()
        self._drafts: list[tuple[str, dict[str, Any]]] = []
        self._stream_msg = ""  # the streaming message's id (message_start), for text_delta block keys

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        out, self._drafts = self._drafts, []
        return out

    def _emit(self, kind: str, /, **payload: Any) -> None:
        self._drafts.append((kind, payload))

    def feed(self, line: str | bytes) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        line = line.strip()
        if not line:
            return self.take()
        try:
            ev = json.loads(line)
        except ValueError:
            self._emit("note", text=one_line(line, 500), source="cli")
            return self.take()
        if isinstance(ev, dict):
            try:
                self._event(ev)
            except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as exc:
                # A CLI event of an unexpected shape never ends the turn: it becomes a note.
                self._emit("note", text=one_line(f"unexpected CLI event ({type(exc).__name__}): {line}", 500),
                           source="cli")
        return self.take()

    def _event(self, ev: dict[str, Any]) -> None:
        t = ev.get("type")
        s = self.summary
        if ev.get("session_id"):
            s.session_id = ev["session_id"]
        if t == "system":
            self._system(ev)
        elif t == "assistant":
            self._assistant(ev)
        elif t == "user":
            self._user(ev)
        elif t == "result":
            self._result(ev)
        elif t == "stream_event":
            self._stream_event(ev)

    def _stream_event(self, ev: dict[str, Any]) -> None:
        """`--include-partial-messages`: text deltas as they stream (`text_delta` drafts, never stored:
        the bus coalesces them on `hive.agent.<me>.typing`). The block's whole text still comes in
        the `assistant` event, which is what is stored. Sub-agents' streams are not shown."""
        inner = ev.get("event")
        if not isinstance(inner, dict) or ev.get("parent_tool_use_id"):
            return
        it = inner.get("type")
        if it == "message_start":
            msg = inner.get("message")
            self._stream_msg = str(msg.get("id") or "") if isinstance(msg, dict) else ""
        elif it == "content_block_delta":
            delta = inner.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                msg_id = ev.get("api_message_id") or self._stream_msg
                self._emit("text_delta", block=f"{msg_id}:{inner.get('index', 0)}", text=delta["text"])

    def _system(self, ev: dict[str, Any]) -> None:
        st, s = ev.get("subtype"), self.summary
        if st == "init":
            s.model = ev.get("model") or s.model
        elif st == "api_retry":
            status = ev.get("error_status")
            if status == 429 or ev.get("error") == "rate_limit":
                s.rate_limited = True
            self._emit("error", kind="api_retry", status=status, error=ev.get("error"),
                       attempt=ev.get("attempt"), max_retries=ev.get("max_retries"))
        elif st == "status" and ev.get("status") == "compacting":
            self._emit("note", text="compacting…", source="cli")
        elif st == "compact_boundary":
            meta = ev.get("compact_metadata") or {}
            s.compacted = True
            if isinstance(meta.get("post_tokens"), int):
                s.post_compact_tokens = meta["post_tokens"]
            self._emit("note", text=f"compacted ({meta.get('trigger', '?')}): "
                       f"{meta.get('pre_tokens', '?')} → {meta.get('post_tokens', '?')} tokens", source="cli")

    def _assistant(self, ev: dict[str, Any]) -> None:
        s = self.summary
        msg = ev.get("message") or {}
        err = ev.get("error")
        text = _text_of(msg.get("content"))
        if err:
            if err == "rate_limit":
                s.rate_limited = True
            elif err == "authentication_failed":
                s.auth_failed = True
            if _is_too_long(text):
                s.prompt_too_long = True
            self._emit("error", kind=str(err), text=one_line(text, 500))
            return
        if ev.get("parent_tool_use_id"):
            return  # a sub-agent's inner inference: billed in the result, not our ctx, not shown
        if msg.get("model") != "<synthetic>":
            usage = Usage.from_dict(msg.get("usage"))
            if not usage.is_zero():
                s.last = usage
            if msg.get("model"):
                s.model = msg["model"]
        for block in msg.get("content") or []:
            if not isinstance(block, dict):
                continue
            bt = block.get("type")
            if bt == "text" and block.get("text"):
                self._emit("assistant_text", text=block["text"])
            elif bt == "thinking":
                self._emit("thinking", text=block.get("thinking", ""))
            elif bt == "tool_use":
                name = str(block.get("name", "?"))
                s.tool_calls[name] = s.tool_calls.get(name, 0) + 1
                inp = block.get("input") if isinstance(block.get("input"), dict) else {}
                self._emit("tool_use", id=block.get("id"), name=name, input=inp, summary=summarize_tool(name, inp))

    def _user(self, ev: dict[str, Any]) -> None:
        content = (ev.get("message") or {}).get("content")
        if not isinstance(content, list):
            return
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                text = _text_of(block.get("content")) if not isinstance(block.get("content"), str) else block["content"]
                self._emit("tool_result", tool_use_id=block.get("tool_use_id"), is_error=bool(block.get("is_error")),
                           text=text, summary=one_line(text))

    def _result(self, ev: dict[str, Any]) -> None:
        s = self.summary
        s.got_result = True
        s.is_error = bool(ev.get("is_error"))
        s.result_text = str(ev.get("result") or "")
        s.api_error_status = ev.get("api_error_status")
        s.cumulative = Usage.from_dict(ev.get("usage"))
        s.cost_usd, s.model_costs = _usd(ev.get("total_cost_usd")), {}
        for model, mu in (ev.get("modelUsage") or {}).items():
            if isinstance(mu, dict) and _usd(mu.get("costUSD")) > 0:
                s.model_costs[str(model)] = _usd(mu.get("costUSD"))
            cw = mu.get("contextWindow") if isinstance(mu, dict) else None
            if isinstance(cw, int) and cw > 0:
                s.api_context_window = cw
                s.model = s.model or model
        if s.api_error_status == 429:
            s.rate_limited = True
        if ev.get("terminal_reason") == "prompt_too_long" or (s.is_error and _is_too_long(s.result_text)):
            s.prompt_too_long = True
        if s.is_error and ("authentication_failed" in s.result_text or s.api_error_status == 401):
            s.auth_failed = True
