"""Running the agent CLI (Claude Code) for one turn, and its login over pipes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import structlog

from hive_harness import sandbox as sb
from hive_harness import tokens
from hive_harness.limits import Limits
from hive_harness.liveness import Progress
from hive_harness.mcp_bridge import tool_names
from hive_harness.signals import CliSignals, TurnParser
from hive_harness.streamjson import TurnSummary
from hivewire import config
from hivewire.names import MANAGER

log = structlog.get_logger("hive_harness.agent_cli")

# Built-in tools a coding agent may use without a prompt (the runtime sandboxes
# the agent; anything not listed is denied, never prompted, in --print mode).
DEFAULT_EXTRA_TOOLS = ("Read", "Write", "Edit", "Glob", "Grep", "Bash", "TodoWrite")
URL_RE = re.compile(r"https://\S+")
EXIT_GRACE_S = 2.0  # after the CLI exited without a result: how long its last lines may take to arrive

OnEvents = Callable[[list[tuple[str, dict[str, object]]]], Awaitable[None]]


def system_prompt(agent: str) -> str:
    role = "manager" if agent == MANAGER else "agent"
    text = resources.files("hive_harness").joinpath(f"prompts/{role}.md").read_text()
    return text.replace("{agent}", agent)


def agent_cmd() -> list[str]:
    return shlex.split(config.AGENT_CMD.get())


def allowed_tools(agent: str) -> list[str]:
    extra = config.ALLOWED_TOOLS.get()
    extras = [t for t in re.split(r"[ ,]+", extra) if t] if extra is not None else list(DEFAULT_EXTRA_TOOLS)
    return tool_names(agent) + extras


@dataclass
class CliConfig:
    """How this agent's CLI runs: its dirs, its sandbox, and the environment it gets."""

    agent: str
    state_dir: Path
    creds_dir: Path
    run_dir: Path  # the harness's runtime dir: MCP and egress sockets, relays (read-only inside)
    sandbox: sb.Sandbox
    max_retries: int = 2
    instance: str = ""  # the harness instance (as in its presence)
    config_env: dict[str, str] = field(default_factory=dict)  # the agent's `hive.env`, allowlisted in env()
    limits: Limits = field(default_factory=Limits)
    hidden: list[Path] = field(default_factory=list)
    home: Path | None = None  # HIVE_HOME: the fleet's login token (tokens.fleet_path)
    writable: list[Path] = field(default_factory=list)  # beyond state and creds (a session's output dir)

    @property
    def mcp_socket(self) -> Path:
        return self.run_dir / "mcp.sock"

    @property
    def egress_socket(self) -> Path:
        return self.run_dir / "egress.sock"

    def write_mcp_config(self) -> Path:
        path = self.run_dir / "mcp-config.json"
        inner = lambda p: str(self.sandbox.inner(self.spec(), p))  # noqa: E731
        cfg = {"mcpServers": {"hive": {"type": "stdio", "command": sb.node_binary(),
                                       "args": [inner(self.run_dir / "mcp_relay.js"), inner(self.mcp_socket)]}}}
        path.write_text(json.dumps(cfg, indent=2))  # no secret in it: the relay holds none
        return path

    def spec(self, argv: list[str] | None = None) -> sb.Spec:
        ro = [Path(p) for p in config.SANDBOX_RO_PATHS.get().split(":") if p.strip()]
        return sb.Spec(self.agent, self.state_dir, self.creds_dir, self.run_dir, argv or agent_cmd(), ro_paths=ro,
                       hidden=self.hidden, writable=self.writable)

    def env(self) -> dict[str, str]:
        """The inner command's whole environment: an allowlist, never the harness's own env."""
        src = os.environ
        env = {k: v for k, v in src.items() if k in sb.INNER_PASS or sb.config_env_allowed(k)}
        env.update(sb.filter_config_env(self.config_env)[0])
        if self.sandbox.confined:
            bindir = str(Path(sb.resolved_argv(agent_cmd())[0]).parent)
            env.update(HOME=sb.INNER_HOME, USER="agent", LOGNAME="agent", SHELL="/bin/bash", TMPDIR="/tmp",
                       PATH=f"/usr/local/bin:/usr/bin:/bin:{bindir}")
        else:
            env.update({k: src[k] for k in ("HOME", "PATH", "USER", "LOGNAME", "SHELL", "TMPDIR") if k in src})
        env["CLAUDE_CONFIG_DIR"] = str(self.creds_dir)
        token = tokens.token_for(self.creds_dir, self.home)
        if token:  # the operator's long-lived login (hive login set-token)
            env["CLAUDE_CODE_OAUTH_TOKEN"] = token
        env["CLAUDE_CODE_MAX_RETRIES"] = str(self.max_retries)  # HIVE_CLAUDE_MAX_RETRIES, read by the service
        env["HIVE_AGENT"] = self.agent
        env["HIVE_STATE_DIR"] = str(self.state_dir)
        # The CLI waits only 5 s for MCP servers before the first request, then answers
        # "No such tool available: mcp__hive__… (still connecting)". Wait for ours.
        env.setdefault("MCP_CONNECTION_NONBLOCKING", "0")
        env.setdefault("MCP_CONNECT_TIMEOUT_MS", "60000")
        # Newer CLIs defer MCP tools behind ToolSearch: the hive tools are always presented directly.
        env.setdefault("ENABLE_TOOL_SEARCH", "false")
        env.update(self.sandbox.proxy_env())
        return env

    def command(self, argv: list[str], extra_env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        """`argv` (the inner command) wrapped in this agent's sandbox, and the env to start it with."""
        inner = sb.resolved_argv(argv)
        env = {**self.env(), **(extra_env or {})}
        if not self.sandbox.confined:
            return inner, env
        outer_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return self.sandbox.wrap(self.spec(inner), inner, env, self.state_dir), outer_env

    def has_credentials(self) -> bool:
        env = self.env()
        if env.get("ANTHROPIC_API_KEY") or env.get("CLAUDE_CODE_OAUTH_TOKEN") or env.get("ANTHROPIC_AUTH_TOKEN"):
            return True
        return (self.creds_dir / ".credentials.json").exists()

    def credentials_fingerprint(self) -> str:
        """Changes when the credentials do (a new login, token or key): what failed is not retried as is."""
        env = self.env()
        parts = [hashlib.sha256(env.get(k, "").encode()).hexdigest()[:16]
                 for k in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")]
        try:
            st = (self.creds_dir / ".credentials.json").stat()
            parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
        return "/".join(parts)

    def argv(self, model: str, cont: bool) -> list[str]:
        args = [*agent_cmd(), "--print", "--verbose", "--output-format", "stream-json", "--include-partial-messages",
                "--model", model]
        if cont:
            args.append("--continue")
        args += ["--mcp-config", str(self.sandbox.inner(self.spec(), self.write_mcp_config())), "--strict-mcp-config",
                 "--allowedTools", ",".join(allowed_tools(self.agent)),
                 "--append-system-prompt", system_prompt(self.agent)]
        return args


@dataclass
class CliRun:
    """One running CLI invocation; `cancel()` interrupts it."""

    proc: asyncio.subprocess.Process | None = None
    cancelled: bool = False
    stalled_out: bool = False  # cancelled by the liveness watch (no progress): a failed attempt
    tools_missing: list[str] = field(default_factory=list)  # hive tools absent from the init event
    returncode: int | None = None
    stderr_tail: list[str] = field(default_factory=list)
    progress: Progress | None = None  # told of every stdout line
    signals: CliSignals = field(default_factory=CliSignals)
    on_init: Callable[[CliSignals], Awaitable[None]] | None = None  # once the init event is in

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def cancel(self) -> None:
        self.cancelled = True
        p = self.proc
        if p is None or p.returncode is not None:
            return
        _signal_group(p.pid, signal.SIGTERM)
        if not await _exited(p, 3.0):
            _signal_group(p.pid, signal.SIGKILL)


async def _exited(p: asyncio.subprocess.Process, timeout: float) -> bool:
    """Whether `p` exits within `timeout` (its exit, not its pipes' close: `wait()` waits for both)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while p.returncode is None and loop.time() < end:
        await asyncio.sleep(0.05)
    return p.returncode is not None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def run_turn(cfg: CliConfig, model: str, prompt: str, cont: bool, run: CliRun,
                   on_events: OnEvents) -> TurnSummary:
    """Run the CLI once with `prompt` on stdin; stream parsed events to `on_events`.

    The turn ends when the CLI process has exited and its result is in, never at
    stdout EOF: a child that kept the CLI's stdout (possible unconfined; inside the
    sandbox bwrap ends every process when the CLI exits) cannot hold the turn. What
    is left of its process group is killed then."""
    parser = TurnParser()
    run.signals = parser.signals
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    argv, env = cfg.command(cfg.argv(model, cont))
    run.proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(cfg.state_dir), env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=16 * 1024 * 1024,
        preexec_fn=cfg.limits.preexec(),  # joins the agent's cgroup; a kill -9 of the harness takes its turn down
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

    async def read_out() -> None:
        assert proc.stdout
        init_seen = False
        async for line in proc.stdout:
            if run.progress is not None:
                run.progress.line()
            drafts = parser.feed(line)
            if drafts:
                await on_events(drafts)
            if not init_seen and parser.signals.tools is not None:
                init_seen = True
                if run.on_init is not None:
                    await run.on_init(parser.signals)

    err_task = asyncio.create_task(drain_err())
    out_task = asyncio.create_task(read_out())
    try:
        while proc.returncode is None and not out_task.done():
            await asyncio.wait({out_task}, timeout=0.1)
        while proc.returncode is None:  # stdout closed: the exit follows
            await asyncio.sleep(0.05)
        if not out_task.done() and not parser.summary.got_result:
            await asyncio.wait({out_task}, timeout=EXIT_GRACE_S)
        run.returncode = proc.returncode
        _signal_group(proc.pid, signal.SIGKILL)  # whatever of its group is left (unconfined)
        await asyncio.wait({out_task, err_task}, timeout=1.0)
    except asyncio.CancelledError:
        await run.cancel()
        raise
    finally:
        for t in (out_task, err_task):
            t.cancel()
        await asyncio.gather(out_task, err_task, return_exceptions=True)
        if not proc.stdout.at_eof():
            _close_pipes(proc)
    exc = out_task.exception() if out_task.done() and not out_task.cancelled() else None
    if exc is not None:
        raise exc
    return parser.summary


def _close_pipes(proc: asyncio.subprocess.Process) -> None:
    """Drop our ends of the pipes a leftover child may still hold."""
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()


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
        os.makedirs(self.cfg.creds_dir, exist_ok=True)
        argv, env = self.cfg.command([*agent_cmd(), "auth", "login"], {"BROWSER": "true"})  # never open a browser
        self.proc = await asyncio.create_subprocess_exec(
            *argv, cwd=str(self.cfg.state_dir), env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            preexec_fn=self.cfg.limits.preexec(),
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

    async def submit(self, code: str, wait_s: float = 10.0) -> tuple[bool, str | None]:
        """Give the CLI the code; (logged in, error). A wrong code makes `claude auth login` say why
        and exit: that is the error, and the process is gone. Still running after `wait_s`: (False, None)."""
        if not self.running:
            raise RuntimeError("no login in progress")
        assert self.proc and self.proc.stdin
        seen = len(self.output)
        self.proc.stdin.write(code.strip().encode() + b"\n")
        await self.proc.stdin.drain()
        if not await _exited(self.proc, wait_s):
            return False, None
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 2.0)
        if self.proc.returncode == 0:
            return True, None
        said = " ".join("".join(self.output[seen:]).split())[-500:]
        await self.cancel()
        return False, said or "claude auth login failed"

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
