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
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hive_harness import egress
from hive_harness import sandbox as sb
from hive_harness.agent_cli import CliConfig
from hive_harness.limits import Limits
from hivewire.confine import bwrap_error

SCRIPT = Path(__file__).with_name("hostile_agent.sh")
PROBES = ("remount-root", "remount-usr", "mount-tmpfs", "write-etc", "write-usr", "read-operator-home",
          "read-shadow", "read-other-agent", "read-nats-creds", "read-operator-token", "read-broker-db",
          "env-secrets", "harness-env", "tcp-host-loopback", "tcp-via-proxy", "http-via-proxy", "unix-socket",
          "abstract-socket", "capabilities", "nested-userns", "see-host-pids", "write-harness-files",
          "chroot-escape", "outlive-started", "fork-bomb", "memory")
MARKERS = ("sleep 987654", "sleep 987653")
ESCAPE_FILES = (Path("/etc/hive-escape"), Path("/usr/hive-escape"))  # what write-etc / write-usr would leave

pytestmark = pytest.mark.skipif(bwrap_error(shutil.which("bwrap")) is not None, reason="bwrap cannot confine here")


@dataclass
class Host:
    """A hive on this machine with things worth stealing, outside /tmp (the sandbox's /tmp is its own)."""

    home: Path
    secret: Path  # a private file in the operator's home
    tcp_port: int
    unix_socket: Path
    abstract: str

    def targets(self) -> list[str]:
        return [f"HOSTILE_OPERATOR_SECRET={self.secret}", f"HOSTILE_OTHER_AGENT_DIR={self.home}/agents/bob",
                f"HOSTILE_NATS_DIR={self.home}/nats", f"HOSTILE_OPERATOR_TOKEN_FILE={self.home}/operator.token",
                f"HOSTILE_BROKER_DB={self.home}/broker.sqlite", f"HOSTILE_TCP_PORT={self.tcp_port}",
                f"HOSTILE_UNIX_SOCKET={self.unix_socket}", f"HOSTILE_ABSTRACT_SOCKET={self.abstract}",
                "HOSTILE_FORK=200", "HOSTILE_MEMORY_MB=512"]


def _listen_forever(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.close()


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    base = Path("/var/lib") if os.access("/var/lib", os.W_OK) else Path.home()
    root = Path(tempfile.mkdtemp(prefix="hive-hostile-", dir=base))
    home = root / "hive"
    for d in ("agents/alice/state", "agents/alice/creds", "agents/bob/state", "agents/bob/creds", "nats/creds"):
        (home / d).mkdir(parents=True)
    (home / "agents/bob/creds/.credentials.json").write_text('{"token": "bob-secret"}')
    (home / "nats/creds/operator.env").write_text("HIVE_NATS_PASSWORD=operator-secret\n")
    (home / "operator.token").write_text("operator-token-secret\n")
    (home / "broker.sqlite").write_bytes(b"SQLite format 3\0")
    (home / "agents/alice/state/events.sqlite").write_bytes(b"harness-owned")
    secret = Path.home() / f".hive-hostile-{uuid.uuid4().hex}"
    secret.write_text("operator-private\n")
    secret.chmod(0o600)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    usock = socket.socket(socket.AF_UNIX)
    upath = home / "run.sock"
    usock.bind(str(upath))
    usock.listen()
    abstract = f"hive-hostile-{uuid.uuid4().hex[:8]}"
    asock = socket.socket(socket.AF_UNIX)
    asock.bind("\0" + abstract)
    asock.listen()
    for f in ESCAPE_FILES:
        assert not f.exists(), f"{f} is left from an earlier run: remove it"
    threading.Thread(target=_listen_forever, args=(tcp,), daemon=True).start()
    for k, v in {"HIVE_OPERATOR_TOKEN": "tok-secret", "HIVE_NATS_PASSWORD": "nats-secret",
                 "HIVE_NATS_CREDS": str(home / "nats/creds/operator.env"), "SSH_AUTH_SOCK": str(upath),
                 "AWS_SECRET_ACCESS_KEY": "aws-secret", "HOSTILE_SECRET": "x"}.items():
        monkeypatch.setenv(k, v)
    try:
        yield Host(home, secret, tcp.getsockname()[1], upath, abstract)
    finally:
        for s in (tcp, usock, asock):
            s.close()
        secret.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)


def survivors() -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(m in cmd for m in MARKERS):
                out.append(int(p.name))
    return out


def kill_survivors() -> None:
    for pid in survivors():
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


async def run_hostile(host: Host, sandbox: sb.Sandbox, *, as_uid: int | None = None) -> dict[str, str]:
    adir = host.home / "agents/alice"
    run_dir = Path(tempfile.mkdtemp(prefix="hive-alice-"))
    sb.write_run_files(run_dir, "alice")
    limits = Limits(pids_max=64, memory_max=128 << 20)
    cfg = CliConfig("alice", adir / "state", adir / "creds", run_dir, sandbox, limits=limits, hidden=[host.home])
    if sandbox.confined:
        assert limits.setup("alice"), "no cgroup for the limits on this host"
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
