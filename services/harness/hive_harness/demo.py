"""`hive demo`: a whole hive whose agents talk to the bundled SIMULATOR, not a model.

It is `hive up` (embedded NATS, broker, deployer, dashboard, backup; agents run
the real `claude` CLI in the sandbox) in a HIVE_HOME of its own, plus the
Messages-API simulator (`simmodel`) on loopback, played by the scenario in
`demoscript`. Every agent gets `ANTHROPIC_BASE_URL` = the simulator and a fake
API key; every service gets `HIVE_DEMO=1` (the dashboard shows a banner on
every page). Once the dashboard answers, the demo sends the manager its first
message and prints where to watch. No account or API key is needed.

The demo home is started fresh each run: the previous demo's is removed, and
only a directory `hive demo` made itself (it holds the `DEMO` file) is ever
removed; `--keep` keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from pathlib import Path

import typer

from hive_harness import demoscript
from hive_harness.simmodel import SimModel
from hivewire import config, natsauth
from hivewire.cli import upready
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from hivewire.wire import ops

DEFAULT_HOME = "~/.local/share/hive-demo"
MARKER = "DEMO"
FAKE_API_KEY = "sk-ant-demo-not-a-real-key"
KICKOFF_TIMEOUT_S = 180.0
# credentials of a real model, and the identity of another hive, are never handed to the demo's agents
DROPPED_ENV = ("HIVE_NATS_URL", *natsauth.IDENTITY_ENV, "HIVE_OPERATOR_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
               "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
LABEL = "DEMO: agents talk to a scripted simulator (hive sim-model), not a model. No account or API key is used."


class DemoError(Exception):
    pass


def prepare_home(home: Path, keep: bool) -> None:
    """A fresh demo home (the previous demo's removed) or, with `keep`, the previous one."""
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).is_file():
            raise DemoError(f"{home} is not empty and was not made by hive demo: choose another --home")
        pid_file = home / "run" / "hive-up.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
            raise DemoError(f"a hive is already running in {home} (pid {pid}): stop it first")
        if not keep:
            shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / MARKER).write_text("Made by `hive demo`; the next `hive demo` removes this directory.\n")


def agent_cmd() -> str | None:
    """The agent CLI: HIVE_AGENT_CMD, `claude` on PATH, else the one scripts/install put in .tools."""
    if config.AGENT_CMD.get() != config.AGENT_CMD.default or shutil.which("claude"):
        return None
    local = Path(__file__).resolve().parents[3] / ".tools/node_modules/.bin/claude"
    return str(local) if local.exists() else None


def demo_env(home: Path, sim_url: str) -> dict[str, str]:
    """What the demo sets in its own environment (inherited by every service and, allowlisted, by agents)."""
    env = {"HIVE_HOME": str(home), "HIVE_DEMO": "1", "ANTHROPIC_BASE_URL": sim_url, "ANTHROPIC_API_KEY": FAKE_API_KEY,
           "HIVE_METRICS_ADDR": "127.0.0.1:0", "HIVE_DEPLOYER_ENSURE_MANAGER": "1"}
    cmd = agent_cmd()
    if cmd:
        env["HIVE_AGENT_CMD"] = cmd
    return env


async def kickoff(nats_url: str, timeout: float = KICKOFF_TIMEOUT_S) -> str:
    """Send the manager its first message as the operator, once the broker knows the manager."""
    deadline = asyncio.get_running_loop().time() + timeout
    msg_id = f"demo-kickoff-{uuid.uuid4().hex}"  # a retry stores it once
    transport = await NatsTransport.connect(nats_url, name="hive-demo", forever=True)
    try:
        client = HiveClient(transport, timeout=5.0)
        while True:
            try:
                reply = await client.request(ops.BROKER_SEND,
                                             wb.SendRequest(to="manager", body=demoscript.KICKOFF, id=msg_id),
                                             agent="operator")
                return reply.id
            except HiveError as err:
                if err.code not in ("unknown_recipient", "unavailable", "timeout") \
                        or asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(0.5)
    finally:
        await transport.close()


def ready_lines(s: Settings, ports: upready.Ports, log_dir: Path, sim: SimModel) -> list[str]:
    token = s.home / "operator.token"
    return [
        "Hive demo is ready",
        f"  {LABEL}",
        f"  dashboard:  {ports.dashboard_url}",
        f"  token:      {token}  (paste its contents at the login page)",
        "  watch:      the manager asks for a helper: approve it (approvals); the helper writes "
        f"{demoscript.HELLO}",
        "              and reports back; the manager asks you a question: answer it (questions)",
        f"  simulator:  {sim.url}  (every agent's ANTHROPIC_BASE_URL, with a fake API key)",
        f"  home:       {s.home}  (fresh each run)",
        f"  logs:       {log_dir}",
        f"  stop:       Ctrl-C here (or kill -TERM {os.getpid()})",
    ]


def run_demo(home: Path, keep: bool, sim_port: int) -> None:
    from hivewire.cli.up import UpHooks, run_up

    try:
        prepare_home(home, keep)
    except DemoError as exc:
        upready.say(f"error: {exc}")
        raise typer.Exit(2) from exc
    for key in DROPPED_ENV:
        os.environ.pop(key, None)
    sim = SimModel(demoscript.script(lambda step: upready.say(f"simulator: {step.say}") if step.say else None),
                   port=sim_port).start()
    os.environ.update(demo_env(home, sim.url))
    s = Settings.from_env()
    tasks: list[asyncio.Task[None]] = []

    async def send_first_message(nats_url: str) -> None:
        try:
            mid = await kickoff(nats_url)
            upready.say(f"demo: the operator sent the manager its first message ({mid}): {demoscript.KICKOFF!r}")
        except (HiveError, OSError) as exc:
            upready.say(f"demo: could not send the manager its first message: {exc}; see the logs")

    async def on_ready(ports: upready.Ports, log_dir: Path) -> list[str]:
        tasks.append(asyncio.create_task(send_first_message(f"nats://127.0.0.1:{ports.nats}")))
        return ready_lines(s, ports, log_dir, sim)

    async def on_stop() -> None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    upready.say(LABEL)
    try:
        run_up(s, nats_port=0, hooks=UpHooks(on_ready=on_ready, on_stop=on_stop))
    finally:
        sim.stop()


def register(app: typer.Typer) -> None:
    @app.command("demo", short_help="A hive whose agents talk to a simulator.")
    def demo(
        home: str = typer.Option(DEFAULT_HOME, "--home", help="The demo's own HIVE_HOME (made fresh each run)."),
        keep: bool = typer.Option(False, "--keep", help="Keep the previous demo's state instead of starting fresh."),
        sim_port: int = typer.Option(0, "--sim-port", help="Port of the simulator on 127.0.0.1 (0: any free one)."),
    ) -> None:
        """Start a demo hive whose agents talk to a scripted SIMULATOR, not a model.

        Like `hive up`, in its own HIVE_HOME, with the bundled Messages-API simulator on loopback
        and a short scenario: the manager asks for a helper (you approve it in the dashboard), the
        helper writes a file and reports back, and the manager asks you a question. No account or
        API key is needed; every page of the dashboard says it is a demo. Ctrl-C stops it."""
        run_demo(Path(home).expanduser(), keep, sim_port)
