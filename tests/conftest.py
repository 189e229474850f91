"""Fixtures shared by every test: a real nats-server, a temporary HIVE_HOME.

One nats-server per session, and one NATS *account* per test: `nats_url` carries the
test's own user, so everything the test starts (in-process or as a process, through
HIVE_NATS_URL) talks in an account no other test shares. A service another test left
running cannot answer this test's requests or see its events, whatever the subjects.
`nats_server.url` (no user) is a shared account, for tests that want the server itself.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hivewire.nats_transport import NatsTransport
from hivewire.natsd import NatsServer
from hivewire.settings import Settings
from hivewire.transport import MemoryTransport

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


class Accounts:
    """The session server's accounts: one shared (no user needed), one more per test."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.users: list[tuple[str, str]] = []
        self.seq = itertools.count(1)
        self.anon = secrets.token_hex(8)
        self.write()

    def write(self) -> None:
        lines = ["server_name: hive", "no_auth_user: anon", "accounts {",
                 f'  SHARED {{ jetstream: enabled, users: [ {{user: anon, password: "{self.anon}"}} ] }}']
        lines += [f'  T{i} {{ jetstream: enabled, users: [ {{user: {u}, password: "{p}"}} ] }}'
                  for i, (u, p) in enumerate(self.users, 1)]
        self.config.write_text("\n".join([*lines, "}", ""]))

    def add(self, server: NatsServer) -> tuple[str, str]:
        user = (f"t{next(self.seq)}", secrets.token_hex(12))
        self.users.append(user)
        self.write()
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGHUP)  # our own server: reload its config
        deadline = time.monotonic() + 10
        while not _can_log_in(server, *user):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not take the account of {user[0]}")
            time.sleep(0.02)
        return user


def _can_log_in(server: NatsServer, user: str, password: str) -> bool:
    """One NATS handshake: CONNECT as `user`, then PING; PONG means the server knows the user."""
    with socket.create_connection((server.host, server.port), timeout=2) as s:
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"user":"%s","pass":"%s","verbose":false,"pedantic":false}\r\nPING\r\n'
                  % (user.encode(), password.encode()))
        got = b""
        while b"\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return got.startswith(b"PONG")


@pytest.fixture(scope="session")
def nats_accounts(tmp_path_factory: pytest.TempPathFactory) -> Accounts:
    return Accounts(tmp_path_factory.mktemp("nats-accounts") / "accounts.conf")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory, nats_accounts: Accounts) -> Iterator[NatsServer]:
    """One real nats-server (JetStream on) per test session, on a free port, with per-test accounts."""
    server = NatsServer(tmp_path_factory.mktemp("nats"), config=nats_accounts.config).start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer, nats_accounts: Accounts) -> str:
    """This test's own NATS account on the session's server (a user of its own in the URL)."""
    user, password = nats_accounts.add(nats_server)
    return f"nats://{user}:{password}@{nats_server.host}:{nats_server.port}"


@pytest.fixture
def hive_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nats_url: str) -> Path:
    """A temporary HIVE_HOME, with the env of every child pointing at it."""
    home = tmp_path / "hive"
    home.mkdir()
    monkeypatch.setenv("HIVE_HOME", str(home))
    monkeypatch.setenv("HIVE_NATS_URL", nats_url)
    monkeypatch.setenv("HIVE_METRICS_ADDR", "127.0.0.1:0")
    return home


@pytest.fixture
def settings(hive_home: Path) -> Settings:
    return Settings.from_env()


@pytest.fixture
async def nats_transport(nats_url: str) -> AsyncIterator[NatsTransport]:
    t = await NatsTransport.connect(nats_url, name="hive-test", forever=False)
    yield t
    await t.close()


@pytest.fixture
async def memory_transport() -> AsyncIterator[MemoryTransport]:
    t = MemoryTransport()
    yield t
    await t.close()


@pytest.fixture(params=["memory", "nats"])
async def any_transport(request: pytest.FixtureRequest, nats_url: str) -> AsyncIterator[object]:
    """Contract tests run once against the in-memory fake, once against NATS."""
    if request.param == "memory":
        t: object = MemoryTransport()
    else:
        t = await NatsTransport.connect(nats_url, name="hive-contract", forever=False)
    yield t
    await t.close()  # type: ignore[attr-defined]


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_configure(config: pytest.Config) -> None:
    # Children must never pick up a developer's real hive.
    os.environ.pop("HIVE_NATS_URL", None)
    os.environ.pop("HIVE_HOME", None)


@pytest.fixture
def sim_model() -> Iterator[Any]:
    """The Messages-API *simulator* (hive_harness.simmodel; scripted, not a model).

    Point a claude CLI at it with `ANTHROPIC_BASE_URL=sim_model.url`; script
    answers with `sim_model.script.add(Step(...))`; `script.requests` records
    every request.
    """
    from hive_harness.simmodel import Script, SimModel

    s = SimModel(Script()).start()
    yield s
    s.stop()
