"""The hostile-agent suite: a scripted agent CLI tries to escape, and every try must fail.

`hostile_agent.sh` plays a prompt-injected agent: it tries mounts, writes to the
host, reads the operator's and other agents' secrets, connects to host loopback
ports and unix sockets (also through the sandbox's own proxy), looks for secrets
in its environment, forks and allocates past the limits, and leaves processes
behind. It runs in the sandbox the harness builds, as root (as CI runs) and as
an unprivileged user; the same script run unconfined must escape, so the
checks can fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from hive_harness import egress
from hive_harness import sandbox as sb
from hive_harness.agent_cli import CliConfig
from hive_harness.limits import Limits
from hivewire.confine import bwrap_error

from .hostile import ESCAPE_FILES, PROBES, SCRIPT, Host, kill_survivors, needs_bwrap, survivors

pytestmark = needs_bwrap

async def run_hostile(host: Host, sandbox: sb.Sandbox, *, as_uid: int | None = None) -> dict[str, str]:
    adir = host.home / "agents/alice"
    run_dir = Path(tempfile.mkdtemp(prefix="hive-alice-"))
    sb.write_run_files(run_dir, "alice")
    limits = Limits(pids_max=64, memory_max=128 << 20)
    cfg = CliConfig("alice", adir / "state", adir / "creds", run_dir, sandbox, limits=limits, hidden=[host.home])
    if sandbox.confined:
        assert limits.setup("alice", run_dir.name), "no cgroup for the limits on this host"
    proxy = egress.EgressProxy(cfg.egress_socket, {("127.0.0.1", 9)}, agent="alice")  # a port nobody serves
    await proxy.start()
    preexec: Callable[[], None] = limits.preexec()
    if as_uid is not None:  # the agent's own dirs are its; the way to them may be walked, not listed
        for d in (host.home.parent, host.home, host.home / "agents"):
            d.chmod(0o711)
        for p in (run_dir, *os.listdir(run_dir), adir, adir / "state", adir / "creds"):
            os.chown(run_dir / p, as_uid, as_uid)
        join = preexec

        def preexec() -> None:
            join()
            os.setgroups([])
            os.setgid(as_uid)
            os.setuid(as_uid)

    argv, env = cfg.command([str(SCRIPT), *host.targets()])
    lines: list[str] = []
    try:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=str(cfg.state_dir), preexec_fn=preexec,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        # up to the result event, not EOF: unconfined, a left-behind child holds the pipe open
        while not any('"type":"result"' in x for x in lines):
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            if not line:
                break
            lines.append(line.decode(errors="replace").rstrip())
        if not sandbox.confined:
            kill_survivors()  # the control's left-behind children hold the pipe (Python 3.11 waits for it)
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        await proxy.close()
        limits.teardown()
        shutil.rmtree(run_dir, ignore_errors=True)
    assert lines and '"type":"result"' in lines[-1], lines
    got = {}
    for line in lines:
        verdict, _, rest = line.partition(" ")
        if verdict in ("BLOCKED", "ESCAPED"):
            name, _, detail = rest.partition(" ")
            got[name] = f"{verdict} {detail}".strip()
    return got


async def test_a_hostile_agent_escapes_nothing_as_root(host: Host) -> None:
    got = await run_hostile(host, sb.from_env({"HIVE_SANDBOX": "bwrap"}))
    assert set(got) == set(PROBES), sorted(set(PROBES) ^ set(got))
    escaped = {k: v for k, v in got.items() if not v.startswith("BLOCKED")}
    assert escaped == {}
    assert not survivors(), "a process outlived its sandbox"
    assert (host.home / "agents/alice/state/events.sqlite").read_bytes() == b"harness-owned"
    assert not await asyncio.to_thread(lambda: ESCAPE_FILES[0].exists() or ESCAPE_FILES[1].exists())


async def test_a_hostile_agent_escapes_nothing_as_an_unprivileged_user(host: Host) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to start the sandbox as another user")
    got = await run_hostile(host, sb.from_env({"HIVE_SANDBOX": "bwrap"}), as_uid=65534)
    assert set(got) == set(PROBES), sorted(set(PROBES) ^ set(got))
    assert {k: v for k, v in got.items() if not v.startswith("BLOCKED")} == {}
    assert not survivors()


async def test_the_same_agent_unconfined_does_escape(host: Host) -> None:
    """The control: without the sandbox the probes succeed, so the checks above can fail."""
    try:
        got = await run_hostile(host, sb.from_env({"HIVE_SANDBOX": "none", "HIVE_ALLOW_UNCONFINED": "1"}))
    finally:
        kill_survivors()
        for f in ESCAPE_FILES:  # as root, unconfined, it really did write there
            f.unlink(missing_ok=True)
    escaped = {k for k, v in got.items() if v.startswith("ESCAPED")}
    assert {"read-operator-home", "read-other-agent", "read-operator-token", "tcp-host-loopback", "unix-socket",
            "abstract-socket", "see-host-pids", "write-harness-files"} <= escaped, got


def test_unconfined_needs_an_explicit_yes() -> None:
    from hivewire.errors import HiveError

    with pytest.raises(HiveError) as err:
        sb.from_env({"HIVE_SANDBOX": "none"})
    assert "HIVE_ALLOW_UNCONFINED=1" in err.value.message
    with pytest.raises(HiveError) as err:
        sb.from_env({"HIVE_SANDBOX": "bwrap", "HIVE_BWRAP": "/nonexistent/bwrap"}, check=bwrap_error)
    assert err.value.code == "unavailable" and "apt-get install bubblewrap" in err.value.message
