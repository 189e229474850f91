"""The stream-json parser and token accounting against recorded real CLI output.

The files in data/ are stdout of the real `claude` CLI 2.1.197 run against
the Messages-API simulator (tool_turn: two inferences with scripted usage).
"""

from __future__ import annotations

import json
from pathlib import Path

from hive_harness.streamjson import StreamParser, TurnSummary, effective_context_window, summarize_tool

DATA = Path(__file__).resolve().parent / "data"


def parse(name: str) -> tuple[TurnSummary, list[tuple[str, dict[str, object]]]]:
    p = StreamParser()
    events = []
    for line in (DATA / f"{name}.jsonl").read_bytes().splitlines():
        events += p.feed(line)
    return p.summary, events


def test_tool_turn_ctx_is_last_inference_and_cost_is_cumulative() -> None:
    s, events = parse("tool_turn")
    # ctx: the LAST assistant event's input + cache_read + cache_creation
    assert s.ctx == 300 + 31000 + 700
    last = (s.last.input_tokens, s.last.cache_read_input_tokens, s.last.cache_creation_input_tokens)
    assert last == (300, 31000, 700)
    # cost: the result event's cumulative usage (both inferences)
    assert (s.cumulative.input_tokens, s.cumulative.cache_read_input_tokens) == (1500, 61000)
    assert s.cumulative.cache_creation_input_tokens == 1200 and s.cumulative.output_tokens == 65
    assert s.cost == 1500 + 61000 + 1200 + 65
    assert s.api_context_window == 200000
    assert s.tool_calls == {"Read": 1} and s.tool_call_count == 1
    assert s.got_result and not s.is_error and not s.rate_limited and not s.prompt_too_long
    kinds = [k for k, _ in events]
    assert kinds == ["tool_use", "tool_result", "assistant_text"]
    assert events[0][1]["summary"] == "Read /etc/hostname"
    assert events[2][1]["text"] == "all done"


def test_rate_limited_output() -> None:
    s, events = parse("rate_limited")
    assert s.rate_limited and s.is_error and s.api_error_status == 429
    assert s.ctx is None  # synthetic error message: no misleading zero
    assert any(k == "error" and p.get("kind") == "api_retry" and p.get("status") == 429 for k, p in events)


def test_prompt_too_long_output() -> None:
    s, _ = parse("prompt_too_long")
    assert s.prompt_too_long and s.is_error and not s.rate_limited


def test_auth_failed_output() -> None:
    s, events = parse("auth_failed")
    assert s.auth_failed and s.is_error
    assert any(k == "error" and p.get("kind") == "authentication_failed" for k, p in events)


def test_context_window_fallbacks() -> None:
    assert effective_context_window(1_000_000, 500_000) == 1_000_000
    assert effective_context_window(None, 500_000) == 500_000
    assert effective_context_window(None, None) == 200_000
    assert effective_context_window(0, 0) == 200_000


def test_garbage_lines_become_notes_and_never_raise() -> None:
    p = StreamParser()
    assert p.feed(b"not json at all") == [("note", {"text": "not json at all", "source": "cli"})]
    assert p.feed("") == []
    assert p.feed("[1, 2]") == []
    assert p.feed(json.dumps({"type": "assistant", "message": {"content": "weird", "usage": None}})) == []
    assert p.summary.ctx is None


def test_subagent_inference_does_not_count_as_ctx_events() -> None:
    p = StreamParser()
    p.feed(json.dumps({"type": "assistant", "message": {"model": "m", "usage": {"input_tokens": 10},
                                                         "content": [{"type": "text", "text": "main"}]}}))
    evs = p.feed(json.dumps({"type": "assistant", "parent_tool_use_id": "t1", "message": {
        "model": "m", "usage": {"input_tokens": 99}, "content": [{"type": "text", "text": "inner"}]}}))
    assert evs == []
    assert p.summary.ctx == 10


def test_tool_summaries() -> None:
    assert summarize_tool("mcp__hive__send", {"to": "bob", "body": "hi\nthere"}) == "send → bob: hi there"
    assert summarize_tool("Bash", {"command": "ls -la"}) == "Bash $ ls -la"
    assert summarize_tool("mcp__hive__whoami", {}) == "whoami"
    assert len(summarize_tool("Bash", {"command": "x" * 1000})) == 160
