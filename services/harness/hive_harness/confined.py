"""`python -m hive_harness.confined`: one command in an agent's kind of sandbox, then its exit code.

For what the deployer runs outside a harness (sessions): the same bubblewrap
sandbox, egress allowlist, environment allowlist and limits as an agent's turn.

    python -m hive_harness.confined --name session-ab12 --workdir DIR [--writable DIR]...
        [--hidden DIR]... [--pass NAME]... -- COMMAND [ARGS...]

`--workdir` is its cwd and writable, with a private CLI config dir inside it;
`--pass NAME` hands a variable of this process's environment to the command
(on top of the allowlist). `HIVE_SANDBOX` picks the sandbox as for a harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from hive_harness import egress
from hive_harness import sandbox as sb
from hive_harness.agent_cli import CliConfig
from hive_harness.limits import Limits
from hivewire.errors import HiveError


async def run(argv: list[str], name: str, workdir: Path, writable: list[Path], hidden: list[Path],
              passed: dict[str, str]) -> int:
    sandbox = sb.from_env()
    run_dir = Path(tempfile.mkdtemp(prefix=f"hive-{name}-"))
    creds = workdir / ".claude"
    creds.mkdir(mode=0o700, parents=True, exist_ok=True)
    cfg = CliConfig(name, workdir, creds, run_dir, sandbox, limits=Limits.from_env(), hidden=hidden,
                    writable=writable)
    proxy = egress.EgressProxy(cfg.egress_socket, egress.allowlist(), agent=name)
    try:
        sb.write_run_files(run_dir, name)
        if sandbox.confined:
            await asyncio.to_thread(cfg.limits.setup, name, run_dir.name.rsplit("-", 1)[-1])
        await proxy.start()
        cmd, env = cfg.command(argv, passed)
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=str(workdir), preexec_fn=cfg.limits.preexec())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda s=sig: _forward(proc.pid, s))
        return await proc.wait()
    finally:
        await proxy.close()
        cfg.limits.teardown()
        shutil.rmtree(run_dir, ignore_errors=True)


def _forward(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def main(args: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hive_harness.confined", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="a label for the sandbox (its hostname, cgroup, logs)")
    p.add_argument("--workdir", required=True, type=Path, help="cwd of the command; writable")
    p.add_argument("--writable", action="append", default=[], type=Path, help="another dir it may write")
    p.add_argument("--hidden", action="append", default=[], type=Path, help="a dir it must not see (HIVE_HOME)")
    p.add_argument("--pass", dest="passed", action="append", default=[], help="a variable to hand on")
    p.add_argument("command", nargs=argparse.REMAINDER)
    ns = p.parse_args(args)
    cmd = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not cmd:
        p.error("no command after --")
    passed = {k: os.environ[k] for k in ns.passed if k in os.environ}
    try:
        rc = asyncio.run(run(cmd, ns.name, ns.workdir, ns.writable, ns.hidden, passed))
    except HiveError as err:
        print(f"hive sandbox: {err.message}", file=sys.stderr)
        rc = 125
    sys.exit(rc)


if __name__ == "__main__":
    main()
