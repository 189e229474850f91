"""`hive demo`'s scenario and home, without processes: which request plays which step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hive_harness import demoscript
from hive_harness.demo import MARKER, DemoError, demo_env, prepare_home


def request(*users: object, tools: bool = True) -> str:
    """A Messages-API body: the given user messages (each a string or a content list), in order."""
    msgs: list[dict[str, object]] = []
    for u in users:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]
    msgs = [*msgs[:-1], {"role": "system", "content": "a system-role message after the last user turn"}]
    return json.dumps({"model": "haiku", "messages": msgs, "tools": [{"name": "Bash"}] if tools else []})


def tool_result(text: str) -> list[dict[str, object]]:
    return [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": text}]},
            {"type": "text", "text": "<system-reminder>x</system-reminder>"}]


def test_steps_match_only_the_newest_user_message_and_play_once() -> None:
    said: list[str] = []
    script = demoscript.script(lambda s: said.append(s.say))
    kickoff = f"[wake: message from operator · id 2]\n\n{demoscript.KICKOFF}"
    step = script.take(request(kickoff), True)
    assert step is not None and step.tool_name == "mcp__hive__request_spawn" and step.tool_input == {"name": "helper"}
    # a side request (no tools) never takes a step; the same wake again finds it gone
    assert script.take(request(kickoff, tools=False), False) is None
    assert script.take(request(kickoff), True) is None
    # the tool result of the request: the kickoff is history now, only the newest message counts
    step = script.take(request(kickoff, tool_result('{"approval_id": "1"}')), True)
    assert step is not None and step.kind == "text" and "approve" in step.text
    approved = "[wake: approval from operator · id 4]\n\n[approval 1] spawn for helper: approved"
    step = script.take(request(kickoff, approved), True)
    assert step is not None and step.tool_input == {"to": "helper", "body": demoscript.TASK}
    assert said[0].startswith("manager asks to spawn `helper`") and said[-1] == "manager sends the helper its task"


def test_a_helper_not_up_yet_is_waited_for_as_often_as_needed() -> None:
    script = demoscript.script()
    unknown = tool_result("error (unknown_recipient): no agent named 'helper' (the deployer has not created it)")
    for _ in range(3):  # sticky: wait, send again, as long as the helper is not there
        wait = script.take(request("earlier", unknown), True)
        assert wait is not None and wait.tool_name == "Bash" and "sleep 2" in wait.tool_input["command"]
        again = script.take(request("earlier", tool_result("helper-starting")), True)
        assert again is not None and again.tool_name == "mcp__hive__send" and again.tool_input["to"] == "helper"


def test_the_helper_writes_reports_and_the_manager_asks_then_thanks() -> None:
    script = demoscript.script()
    task = f"[wake: message from manager · id 5]\n\n{demoscript.TASK}"
    write = script.take(request(task), True)
    assert write is not None and write.tool_name == "Bash" and "> hello.txt" in write.tool_input["command"]
    report = script.take(request(task, tool_result("wrote 27 bytes in /x/agents/helper/state")), True)
    assert report is not None and report.tool_input["to"] == "manager"
    ask = script.take(request("[wake: message from helper · id 6]\n\n[demo] hello.txt is written"), True)
    assert ask is not None and ask.tool_name == "mcp__hive__ask"
    assert ask.tool_input == {"question": demoscript.QUESTION, "options": demoscript.OPTIONS}
    done = script.take(request("[wake: answer to question 1 from operator · id 8]\n\nkeep it"), True)
    assert done is not None and done.tool_input["to"] == "operator"


def test_the_demo_home_is_fresh_and_only_a_demo_home_is_removed(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    prepare_home(home, keep=False)
    assert (home / MARKER).is_file() and (home.stat().st_mode & 0o077) == 0
    (home / "broker.sqlite").write_text("old run")
    prepare_home(home, keep=True)
    assert (home / "broker.sqlite").exists()
    prepare_home(home, keep=False)
    assert not (home / "broker.sqlite").exists() and (home / MARKER).is_file()
    real = tmp_path / "real-hive"
    real.mkdir()
    (real / "broker.sqlite").write_text("someone's real hive")
    with pytest.raises(DemoError, match="not made by hive demo"):
        prepare_home(real, keep=False)
    assert (real / "broker.sqlite").read_text() == "someone's real hive"


def test_agents_get_the_simulator_and_a_fake_key_and_the_dashboard_the_banner(tmp_path: Path) -> None:
    env = demo_env(tmp_path, "http://127.0.0.1:1234")
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1234" and "demo-not-a-real-key" in env["ANTHROPIC_API_KEY"]
    assert env["HIVE_DEMO"] == "1" and env["HIVE_HOME"] == str(tmp_path)
