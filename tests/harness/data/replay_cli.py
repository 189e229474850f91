#!/usr/bin/python3
"""A recorded agent CLI: replays stream-json recordings of the real `claude` CLI (tests only).

Set HIVE_AGENT_CMD to this file and the harness runs it instead of `claude`, inside the same
bubblewrap sandbox (the system python3 and this file's directory, bound read-only: no venv, no
npm). It takes the CLI's arguments, reads the prompt on stdin, and writes a recording from this
directory to stdout:

- the prompt names it: `replay:NAME` replays NAME.jsonl; `replay:A,B,...` replays A on the first
  run with that prompt marker, B on the second, and so on (the last one again after that; the
  count is kept in the working directory, the agent's state dir, as `.replay-<marker>`);
- a prompt without a marker (e.g. `/compact`) gets a short successful turn;
- the init event lists the tools of `--allowedTools` besides the recorded ones (the real CLI
  lists the MCP tools it connected; the harness fails a turn without the hive tools);
- exit status 1 when the recording's result is an error, 0 otherwise (as the real CLI does).

It replays, it does not think: a turn loop test with it checks what the harness makes of a
known CLI output (rows, acks, parking, history), not the CLI itself (tests/harness/*_e2e.py).
"""

import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def arg(argv, name):
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


def default_turn():
    sid = "replay-default"
    return [
        {"type": "system", "subtype": "init", "session_id": sid, "tools": [], "mcp_servers": [],
         "model": "claude-haiku-4-5-20251001", "claude_code_version": "replay"},
        {"type": "assistant", "session_id": sid, "message": {
            "id": "msg_replay", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
            "content": [{"type": "text", "text": "done"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 0}}},
        {"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": sid,
         "num_turns": 1, "total_cost_usd": 0.0001,
         "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 0,
                   "cache_creation_input_tokens": 0}},
    ]


def recording(prompt):
    m = re.search(r"replay:([A-Za-z0-9_.,-]+)", prompt)
    if m is None:
        return default_turn()
    names = [n for n in m.group(1).split(",") if n]
    counter = ".replay-" + hashlib.sha256(m.group(1).encode()).hexdigest()[:12]
    try:
        with open(counter) as f:
            n = int(f.read() or "0")
    except (OSError, ValueError):
        n = 0
    with open(counter, "w") as f:
        f.write(str(n + 1))
    name = names[min(n, len(names) - 1)]
    with open(os.path.join(HERE, os.path.basename(name) + ".jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv):
    if "--print" not in argv:  # `auth login` and anything else: not recorded
        print("replay_cli: only --print turns are recorded", file=sys.stderr)
        return 1
    prompt = sys.stdin.read()
    allowed = [t for t in (arg(argv, "--allowedTools") or "").split(",") if t]
    code = 0
    for ev in recording(prompt):
        if ev.get("type") == "system" and ev.get("subtype") == "init":
            ev["tools"] = list(ev.get("tools") or []) + [t for t in allowed if t not in (ev.get("tools") or [])]
            ev["cwd"] = os.getcwd()
        if ev.get("type") == "result" and ev.get("is_error"):
            code = 1
        sys.stdout.write(json.dumps(ev) + "\n")
        sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
