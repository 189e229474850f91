"""The scripted scenario of `hive demo`, played by the Messages-API SIMULATOR (not a model).

The real `claude` CLI of each agent sends its requests to the simulator
(`simmodel.SimModel`); these steps decide its answers, so the CLIs make real
tool calls through the real hive tools and the real sandbox:

1. the operator's first message wakes the manager: it asks for a helper
   (`mcp__hive__request_spawn`, an approval for the operator);
2. the operator approves (in the browser): the manager sends the helper its
   task (and, if the helper is not up yet, waits two seconds and sends again);
3. the helper writes `hello.txt` in its state dir with Bash and reports back
   to the manager (`mcp__hive__send`);
4. the manager asks the operator a question (`mcp__hive__ask`);
5. the operator's answer wakes the manager: it thanks the operator in the
   operator's inbox. The scenario is complete.

Each step matches text of the request's *newest* user message only (the wake
prompt or a tool result), never the conversation before it, so a step cannot
fire again on a later request of the same session.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hive_harness.simmodel import Script, Step

KICKOFF = "[demo] please get a helper to write hello.txt"
HELPER = "helper"
HELLO = "hello.txt"
TASK = (f"[demo] please write {HELLO} in your state dir (one line: hello from the demo helper) "
        "and tell me when it is there.")
QUESTION = f"The helper wrote {HELLO} in its state dir. Shall the swarm keep it?"
OPTIONS = ["keep it", "delete it"]
DONE = "[demo] Thank you for answering. That was the whole demo scenario: a helper spawned with your " \
       "approval, did its task in its sandbox, reported back, and your answer reached the manager."


@dataclass
class DemoStep(Step):
    """A step of the demo: `say` is printed on the demo's console when it plays; a `sticky`
    step stays in the script (it may play again)."""

    say: str = ""
    sticky: bool = False


def newest_user_text(body: dict[str, Any]) -> str:
    """The text of the request's last `user` message: its text blocks and tool results."""
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content")
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, str):
                parts.append(inner)
            elif isinstance(inner, list):
                parts += [str(c.get("text", "")) for c in inner if isinstance(c, dict)]
    return "\n".join(parts)


class NewestTurnScript(Script):
    """A `Script` whose steps match the newest user message of a request, not the whole body."""

    def __init__(self, steps: list[DemoStep], on_step: Callable[[DemoStep], None] | None = None) -> None:
        super().__init__(list(steps))
        self.on_step = on_step
        self.played: list[DemoStep] = []

    def take(self, raw: str, is_main: bool) -> Step | None:
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        newest = newest_user_text(body) if isinstance(body, dict) else ""
        with self._lock:
            for i, s in enumerate(self.steps):
                if (s.side or is_main) and (s.match is None or s.match in newest):
                    if not (isinstance(s, DemoStep) and s.sticky):
                        self.steps.pop(i)
                    break
            else:
                return None
            if isinstance(s, DemoStep):
                self.played.append(s)
        if isinstance(s, DemoStep) and self.on_step is not None:
            self.on_step(s)
        return s


def _tool(match: str, name: str, args: dict[str, Any], text: str, say: str, sticky: bool = False) -> DemoStep:
    return DemoStep(kind="tool_use", match=match, tool_name=name, tool_input=args, text=text, say=say,
                    sticky=sticky)


def steps() -> list[DemoStep]:
    """The scenario, in the order the steps are tried."""
    send_task = {"to": HELPER, "body": TASK}
    write = (f"printf 'hello from the demo helper\\n' > {HELLO} && "
             f"echo \"wrote $(wc -c < {HELLO}) bytes in $PWD\"")
    return [
        _tool(KICKOFF, "mcp__hive__request_spawn", {"name": HELPER},
              "I will ask the operator for a helper.",
              "manager asks to spawn `helper`: approve it in the dashboard (approvals)"),
        DemoStep(match="approval_id", text="I asked the operator to approve a helper; their decision will wake me."),
        _tool(f"spawn for {HELPER}: approved", "mcp__hive__send", send_task,
              "The helper is approved; here is its task.", "manager sends the helper its task"),
        DemoStep(match=f"spawn for {HELPER}: denied", text="The operator said no; the demo ends here.",
                 say="manager: the operator denied the helper; the scenario ends here"),
        _tool("error (unknown_recipient)", "Bash", {"command": "sleep 2; echo helper-starting",
                                                    "description": "wait for the helper to start"},
              "The helper is not up yet; waiting.", "manager waits for the helper to start", sticky=True),
        _tool("helper-starting", "mcp__hive__send", send_task, "Sending the task again.",
              "manager sends the helper its task again", sticky=True),
        _tool("[wake: message from manager", "Bash", {"command": write, "description": f"write {HELLO}"},
              f"Writing {HELLO} in my state dir.", f"helper writes {HELLO} with Bash in its sandbox"),
        _tool(" bytes in ", "mcp__hive__send",
              {"to": "manager", "body": f"[demo] {HELLO} is written in my state dir."},
              "Done; telling the manager.", "helper reports back to the manager"),
        _tool(f"[wake: message from {HELPER}", "mcp__hive__ask", {"question": QUESTION, "options": OPTIONS},
              "The helper is done; asking the operator.",
              "manager asks you a question: answer it in the dashboard (questions)"),
        DemoStep(match="question_id", text="I asked the operator; their answer will wake me."),
        _tool("[wake: answer to question", "mcp__hive__send", {"to": "operator", "body": DONE},
              "Thanking the operator.", "manager got your answer: the scenario is complete"),
    ]


def script(on_step: Callable[[DemoStep], None] | None = None) -> NewestTurnScript:
    return NewestTurnScript(steps(), on_step)
