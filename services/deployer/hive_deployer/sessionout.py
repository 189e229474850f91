"""A session's output: the agent CLI's stream-json made readable for `session.log`, and its cost.

The default session command runs the CLI with `--output-format stream-json --verbose`,
so every event is one JSON line on stdout. The deployer reads them (`pump`):
- `session.log` gets a readable line per event worth reading (assistant text, each
  tool call and its result in one line, the final result text, the dollars) and every
  line that is not JSON as it came (the CLI's stderr, or a `$HIVE_SESSION_CMD` that is
  not the CLI);
- `session.jsonl` keeps the JSON events as they came;
- the final `result` event gives the session's cost: `total_cost_usd`, per model
  `modelUsage.<model>.costUSD`, and its billed tokens (input + output + cache read +
  cache creation of `result.usage`), the same figures a harness's turn row carries.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import IO, Any

MAX_LINE = 16 * 1024 * 1024  # a longer line is logged as its size only (and not parsed)
SHOW = 300  # characters of a tool call or tool result shown in the log


@dataclass
class Outcome:
    """What the CLI's events said about the run (all zero when it printed no `result`)."""

    got_result: bool = False
    is_error: bool = False
    result_text: str = ""
    model: str = ""
    cost_usd: float = 0.0
    model_costs: dict[str, float] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens


def _usd(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) and f > 0 else 0.0


def _int(v: Any) -> int:
    return v if isinstance(v, int) and v > 0 else 0


def _short(s: str) -> str:
    s = " ".join(s.split())
    return s if len(s) <= SHOW else s[:SHOW] + "…"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def readable(ev: dict[str, Any], out: Outcome) -> list[str]:
    """The log lines for one event; a `result` event also fills `out`."""
    kind = ev.get("type")
    if kind == "system" and ev.get("subtype") == "init":
        out.model = out.model or str(ev.get("model") or "")
        return [f"[session] model {ev.get('model', '?')}, cwd {ev.get('cwd', '?')}"]
    if kind == "assistant":
        lines = []
        for b in (ev.get("message") or {}).get("content") or []:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "text" and str(b.get("text", "")).strip():
                lines.append(str(b["text"]).rstrip())
            elif b.get("type") == "tool_use":
                lines.append(f"[tool] {b.get('name', '?')} {_short(json.dumps(b.get('input') or {}))}")
        return lines
    if kind == "user":
        lines = []
        for b in (ev.get("message") or {}).get("content") or []:
            if isinstance(b, dict) and b.get("type") == "tool_result":
                tag = "[tool error]" if b.get("is_error") else "[tool result]"
                lines.append(f"{tag} {_short(_text_of(b.get('content')))}")
        return lines
    if kind == "result":
        return _result(ev, out)
    return []  # status, stream and rate-limit events: not for a person


def _result(ev: dict[str, Any], out: Outcome) -> list[str]:
    out.got_result = True
    out.is_error = bool(ev.get("is_error"))
    out.result_text = str(ev.get("result") or "")
    out.cost_usd = _usd(ev.get("total_cost_usd"))
    raw = ev.get("usage")
    usage: dict[str, Any] = raw if isinstance(raw, dict) else {}
    out.input_tokens, out.output_tokens = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    out.cache_read_input_tokens = _int(usage.get("cache_read_input_tokens"))
    out.cache_creation_input_tokens = _int(usage.get("cache_creation_input_tokens"))
    out.model_costs = {}
    for model, mu in (ev.get("modelUsage") or {}).items():
        if isinstance(mu, dict) and _usd(mu.get("costUSD")) > 0:
            out.model_costs[str(model)] = _usd(mu.get("costUSD"))
    if out.model_costs and out.model not in out.model_costs:  # the main model: the one that cost most
        out.model = max(out.model_costs, key=lambda m: out.model_costs[m])
    head = "[result, error]" if out.is_error else "[result]"
    return [f"{head} {out.result_text}".rstrip(),
            f"[cost] ${out.cost_usd:.6f} · {out.tokens} tokens"
            + "".join(f" · {m} ${c:.6f}" for m, c in sorted(out.model_costs.items()))]


def take_line(raw: bytes, log: IO[bytes], events: IO[bytes], out: Outcome) -> None:
    """One line of the session's stdout+stderr: readable lines to `log`, JSON events to `events`."""
    line = raw.rstrip(b"\r")
    ev: Any = None
    if line.startswith(b"{"):
        try:
            ev = json.loads(line)
        except ValueError:
            ev = None
    if not isinstance(ev, dict) or "type" not in ev:
        log.write(line + b"\n")
        return
    events.write(line + b"\n")
    for text in readable(ev, out):
        log.write(text.encode("utf-8", "replace") + b"\n")


async def pump(stream: asyncio.StreamReader, log: IO[bytes], events: IO[bytes], out: Outcome) -> None:
    """Read the session's output to its end, line by line (lines of any length; huge ones not parsed)."""
    buf = bytearray()
    skipping = 0  # bytes of an over-long line dropped so far
    while chunk := await stream.read(1 << 16):
        buf += chunk
        while (nl := buf.find(b"\n")) >= 0:
            if skipping or nl > MAX_LINE:
                log.write(b"[a line of %d bytes, not shown]\n" % (skipping + nl))
                skipping = 0
            else:
                take_line(bytes(buf[:nl]), log, events, out)
            del buf[:nl + 1]
        if len(buf) > MAX_LINE:
            skipping += len(buf)
            buf.clear()
        log.flush()
        events.flush()
    if skipping or len(buf) > MAX_LINE:
        log.write(b"[a line of %d bytes, not shown]\n" % (skipping + len(buf)))
    elif buf:
        take_line(bytes(buf), log, events, out)
    log.flush()
    events.flush()
