"""Prometheus metrics of the harness (bounded labels: no agent names, no ids)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TURNS = Counter("hive_harness_turns_total", "Turns by result kind.", ["result_kind"])
TURN_SECONDS = Histogram("hive_harness_turn_duration_seconds", "Wall time of one agent turn.",
                         buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
TOKENS = Counter("hive_harness_tokens_total", "Billed tokens (result usage) by kind.", ["kind"])
CTX = Gauge("hive_harness_ctx_tokens", "Last inference's prompt size.")
CONTEXT_WINDOW = Gauge("hive_harness_context_window_tokens", "Effective context window.")
RATE_LIMITED = Gauge("hive_harness_rate_limited", "1 while the agent is rate limited.")
NEEDS_LOGIN = Gauge("hive_harness_needs_login", "1 while the agent CLI has no valid login.")
RATE_LIMIT_HITS = Counter("hive_harness_rate_limits_total", "Turns that hit a rate limit.")
TOOL_CALLS = Counter("hive_harness_tool_calls_total", "Tool calls by tool.", ["tool"])
COMPACTIONS = Counter("hive_harness_compactions_total", "Compactions by trigger.", ["trigger"])
FAILURES = Counter("hive_harness_failures_total", "Failure paths hit, by where.", ["where"])
COST_USD = Counter("hive_harness_cost_usd_total", "Dollars spent (the CLI's modelUsage.costUSD) by model.",
                   ["model"])
PARKED = Gauge("hive_harness_parked", "1 while the agent is parked, by reason (over_budget, runaway).", ["reason"])
RUNAWAYS = Counter("hive_harness_runaways_total", "Times the runaway breaker tripped.")
EVENTS = Counter("hive_harness_events_total", "LiveEvents emitted by kind.", ["kind"])

KNOWN_TOOLS = frozenset({"Bash", "Read", "Write", "Edit", "Glob", "Grep", "Task", "WebFetch", "WebSearch",
                         "TodoWrite", "NotebookEdit"})


def tool_label(name: str) -> str:
    """Bounded tool label: hive tools and built-ins by name, everything else `other`."""
    if name.startswith("mcp__hive__") or name in KNOWN_TOOLS:
        return name
    return "other"
