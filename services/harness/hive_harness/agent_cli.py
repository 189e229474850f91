"""Running the agent CLI (Claude Code) for one turn, and its login over pipes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import structlog

from hive_harness.mcp_bridge import mcp_config, tool_names
from hive_harness.streamjson import StreamParser, TurnSummary
from hivewire.names import MANAGER
from hivewire.procs import die_with_parent

log = structlog.get_logger("hive_harness.agent_cli")

# Built-in tools a coding agent may use without a prompt (the runtime sandboxes
# the agent; anything not listed is denied, never prompted, in --print mode).
DEFAULT_EXTRA_TOOLS = ("Read", "Write", "Edit", "Glob", "Grep", "Bash", "TodoWrite")
URL_RE = re.compile(r"https://\S+")

OnEvents = Callable[[list[tuple[str, dict[str, object]]]], Awaitable[None]]


def system_prompt(agent: str) -> str:
    role = "manager" if agent == MANAGER else "agent"
    text = resources.files("hive_harness").joinpath(f"prompts/{role}.md").read_text()
    return text.replace("{agent}", agent)


def agent_cmd() -> list[str]:
    return shlex.split(os.environ.get("HIVE_AGENT_CMD") or "claude")


def allowed_tools(agent: str) -> list[str]:
    extra = os.environ.get("HIVE_ALLOWED_TOOLS")
    extras = [t for t in re.split(r"[ ,]+", extra) if t] if extra is not None else list(DEFAULT_EXTRA_TOOLS)
    return tool_names(agent) + extras


@dataclass
class CliConfig:
    agent: str
    state_dir: Path
    creds_dir: Path
    nats_url: str
    max_retries: int = 2
    instance: str = ""  # the harness instance (as in its presence); the MCP bridge's recv names it too

    def write_mcp_config(self) -> Path:
        path = self.state_dir / "mcp-config.json"
        # 0600: it may carry NATS credentials (HIVE_NATS_PASSWORD when the harness got them that way).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(mcp_config(self.agent, self.nats_url, sys.executable), indent=2))
        return path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("CLAUDE_CONFIG_DIR", str(self.creds_dir))
        env["CLAUDE_CODE_MAX_RETRIES"] = os.environ.get("HIVE_CLAUDE_MAX_RETRIES", str(self.max_retries))
        env["HIVE_AGENT"] = self.agent
        env["HIVE_NATS_URL"] = self.nats_url
        env["HIVE_STATE_DIR"] = str(self.state_dir)
        if self.instance:
            env["HIVE_INSTANCE"] = self.instance
        env.pop("HIVE_METRICS_ADDR", None)
        # The CLI waits only 5 s for MCP servers before the first request, then answers
        # "No such tool available: mcp__hive__… (still connecting)"; the Python bridge can
        # take longer on a busy host. Wait for it (operators may still override both).
        env.setdefault("MCP_CONNECTION_NONBLOCKING", "0")
        env.setdefault("MCP_CONNECT_TIMEOUT_MS", "60000")
        return env

    def has_credentials(self) -> bool:
        env = self.env()
        if env.get("ANTHROPIC_API_KEY") or env.get("CLAUDE_CODE_OAUTH_TOKEN") or env.get("ANTHROPIC_AUTH_TOKEN"):
            return True
        cfg = Path(env["CLAUDE_CONFIG_DIR"])
        return (cfg / ".credentials.json").exists()

    def argv(self, model: str, cont: bool) -> list[str]:
        args = [*agent_cmd(), "--print", "--verbose", "--output-format", "stream-json", "--model", model]
        if cont:
            args.append("--continue")
        args += ["--mcp-config", str(self.write_mcp_config()), "--strict-mcp-config",
                 "--allowedTools", ",".join(allowed_tools(self.agent)),
                 "--append-system-prompt", system_prompt(self.agent)]
        return args


@dataclass
class CliRun:
    """One running CLI invocation; `cancel()` interrupts it."""

    proc: asyncio.subprocess.Process | None = None
    cancelled: bool = False
    returncode: int | None = None
    stderr_tail: list[str] = field(default_factory=list)

    async def cancel(self) -> None:
        self.cancelled = True
        p = self.proc
        if p is None or p.returncode is not None:
            return
        _signal_group(p.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(p.wait(), 3.0)
        except TimeoutError:
            _signal_group(p.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def run_turn(cfg: CliConfig, model: str, prompt: str, cont: bool, run: CliRun,
                   on_events: OnEvents) -> TurnSummary:
    """Run the CLI once with `prompt` on stdin; stream parsed events to `on_events`."""
    parser = StreamParser()
    argv = cfg.argv(model, cont)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    run.proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(cfg.state_dir), env=cfg.env(), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=16 * 1024 * 1024,
        preexec_fn=die_with_parent,  # a kill -9 of the harness takes its turn down too
    )
    proc = run.proc
    assert proc.stdin and proc.stdout and proc.stderr
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(prompt.encode())
        await proc.stdin.drain()
        proc.stdin.close()

    async def drain_err() -> None:
        assert proc.stderr
        async for line in proc.stderr:
            run.stderr_tail = [*run.stderr_tail[-19:], line.decode(errors="replace").rstrip()]

    err_task = asyncio.create_task(drain_err())
    try:
        async for line in proc.stdout:
            drafts = parser.feed(line)
            if drafts:
                await on_events(drafts)
        run.returncode = await proc.wait()
        await asyncio.gather(err_task, return_exceptions=True)
    except asyncio.CancelledError:
        await run.cancel()
        err_task.cancel()
        raise
    return parser.summary


class LoginSession:
    """`claude auth login` over pipes: shows the URL it prints, accepts the code."""

    def __init__(self, cfg: CliConfig) -> None:
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None
        self.url: str | None = None
        self.output: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._got_url = asyncio.Event()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, wait_url_s: float = 20.0) -> str | None:
        env = self.cfg.env()
        env.setdefault("BROWSER", "true")  # never try to open a browser on a server
        os.makedirs(env["CLAUDE_CONFIG_DIR"], exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            *agent_cmd(), "auth", "login", cwd=str(self.cfg.state_dir), env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._reader = asyncio.create_task(self._read())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._got_url.wait(), wait_url_s)
        return self.url

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        while True:
            chunk = await self.proc.stdout.read(4096)
            if not chunk:
                break
            text = chunk.decode(errors="replace")
            self.output.append(text)
            m = URL_RE.search("".join(self.output))
            if m and self.url is None:
                self.url = m.group(0)
                self._got_url.set()

    async def submit(self, code: str) -> None:
        if not self.running:
            raise RuntimeError("no login in progress")
        assert self.proc and self.proc.stdin
        self.proc.stdin.write(code.strip().encode() + b"\n")
        await self.proc.stdin.drain()

    async def cancel(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 3.0)
            if self.proc.returncode is None:
                _signal_group(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self.proc = None
