"""The hostile agent's targets and probes, shared by the sandbox-level and the `hive up` suites."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hivewire.confine import bwrap_error

needs_bwrap = pytest.mark.skipif(bwrap_error(shutil.which("bwrap")) is not None, reason="bwrap cannot confine here")

SCRIPT = Path(__file__).with_name("hostile_agent.sh")
PROBES = ("remount-root", "remount-usr", "mount-tmpfs", "write-etc", "write-usr", "read-operator-home",
          "read-shadow", "read-other-agent", "read-nats-creds", "read-operator-token", "read-broker-db",
          "env-secrets", "harness-env", "tcp-host-loopback", "tcp-via-proxy", "http-via-proxy", "unix-socket",
          "abstract-socket", "capabilities", "nested-userns", "see-host-pids", "write-harness-files",
          "chroot-escape", "outlive-started", "fork-bomb", "memory")
MARKERS = ("sleep 987654", "sleep 987653")
ESCAPE_FILES = (Path("/etc/hive-escape"), Path("/usr/hive-escape"))  # what write-etc / write-usr would leave



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


