"""What the agent CLI says about itself beyond tokens: its tools, usage limits, retries, logins.

`TurnParser` is `StreamParser` plus the events of newer CLIs (2.1.3xx):

- `system/init`: `tools` (checked for the hive tools) and `claude_code_version`;
- `rate_limit_event`: the subscription's usage-limit state (`rate_limit_info`:
  `status` allowed | allowed_warning | rejected, `resetsAt`, `rateLimitType`,
  `unifiedWindows.<window>.{utilization, resetsAt, status}`);
- `system/api_retry`: the CLI's own retry delay (`retry_delay_ms`), the park of an
  API-key 429 when no reset time is known;
- an `authentication_failed` message's `api_error_code` (`token_expired`,
  `token_revoked`) or text: an expired or revoked login, not a missing one;
- `stream_event` lines (`--include-partial-messages`) carry no summary data:
  they count as progress (the caller sees every line).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from hive_harness.streamjson import StreamParser

EXPIRED_CODES = ("token_expired", "token_revoked")
EXPIRED_TEXT = ("oauth token has expired", "oauth token revoked", "login expired", "token has been revoked")


@dataclass
class CliSignals:
    tools: list[str] | None = None  # init event's tools (None: no init seen)
    version: str | None = None
    rate_limit: dict[str, Any] | None = None  # the latest rate_limit_info
    retry_delay_ms: int | None = None  # the latest api_retry's delay
    auth_reason: str | None = None  # token_expired | auth_failed


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        return None
    return float(v)


def plan_of(info: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """`{window: {utilization, resets_at, status}}` from a rate_limit_info."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(info, dict):
        return out
    windows = info.get("unifiedWindows")
    if isinstance(windows, dict):
        for name, w in windows.items():
            if isinstance(w, dict):
                out[str(name)[:40]] = {"utilization": _num(w.get("utilization")), "resets_at": _num(w.get("resetsAt")),
                                       "status": str(w.get("status") or info.get("status") or "")[:20] or None}
    kind = info.get("rateLimitType")
    if isinstance(kind, str) and kind not in out and _num(info.get("resetsAt")) is not None:
        out[kind[:40]] = {"utilization": _num(info.get("utilization")), "resets_at": _num(info.get("resetsAt")),
                          "status": str(info.get("status") or "")[:20] or None}
    return out


def resets_at(info: dict[str, Any] | None) -> float | None:
    """When a rejected usage limit lifts (unix s), if the CLI said."""
    if not isinstance(info, dict) or info.get("status") != "rejected":
        return None
    at = _num(info.get("resetsAt"))
    if at is None:
        rejected = [w for w in plan_of(info).values() if w.get("status") == "rejected" and w.get("resets_at")]
        at = max((w["resets_at"] for w in rejected), default=None)
    return at


def jitter_s(agent: str, spread_s: float) -> float:
    """A per-agent delay in [0, spread_s): deterministic, so a fleet does not wake at one instant."""
    if spread_s <= 0:
        return 0.0
    h = int.from_bytes(hashlib.sha256(agent.encode()).digest()[:8], "big")
    return (h / 2**64) * spread_s


class TurnParser(StreamParser):
    """`StreamParser` plus `signals` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.signals = CliSignals()

    def _event(self, ev: dict[str, Any]) -> None:
        t, sig = ev.get("type"), self.signals
        if t == "system" and ev.get("subtype") == "init":
            tools = ev.get("tools")
            sig.tools = [str(x) for x in tools] if isinstance(tools, list) else []
            sig.version = str(ev.get("claude_code_version") or "") or None
        elif t == "system" and ev.get("subtype") == "api_retry":
            delay = _num(ev.get("retry_delay_ms"))
            if delay is not None and delay >= 0:
                sig.retry_delay_ms = int(delay)
        elif t == "rate_limit_event":
            info = ev.get("rate_limit_info")
            if isinstance(info, dict):
                sig.rate_limit = info
                if info.get("status") == "rejected":
                    self.summary.rate_limited = True
                    at = resets_at(info)
                    self._emit("note", text=f"usage limit reached ({info.get('rateLimitType') or '?'})"
                               + (f", resets at {at:.0f}" if at else ""), source="cli", rate_limit=plan_of(info))
            return
        elif t == "assistant" and ev.get("error") == "authentication_failed":
            msg = ev.get("message") or {}
            text = " ".join(str(c.get("text", "")) for c in msg.get("content") or [] if isinstance(c, dict)).lower()
            code = ev.get("api_error_code")
            expired = code in EXPIRED_CODES or any(x in text for x in EXPIRED_TEXT)
            sig.auth_reason = "token_expired" if expired else "auth_failed"
        super()._event(ev)


@dataclass
class Plan:
    """The latest usage-limit state the CLI reported (for ctl.state)."""

    windows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def update(self, info: dict[str, Any] | None) -> None:
        got = plan_of(info)
        if got:
            self.windows = got
