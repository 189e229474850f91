"""Fixtures for the operations tests: a nats-server with Hive's auth config."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from opskit import Conn, ConnectAs, collect_leaks

from hivewire import natsauth
from hivewire.natsd import NatsServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def auth_home(tmp_path: Path) -> Path:
    home = tmp_path / "hive"
    natsauth.generate(home, agents=("manager", "alice", "bob"))
    return home


@pytest.fixture
def auth_server(auth_home: Path) -> Iterator[NatsServer]:
    (auth_home / "run").mkdir(parents=True, exist_ok=True)
    server = NatsServer(auth_home / "run" / "nats", config=natsauth.config_path(auth_home)).start()
    yield server
    server.stop()


@pytest.fixture
async def connect_as(auth_home: Path, auth_server: NatsServer) -> AsyncIterator[ConnectAs]:
    conns: list[Client] = []

    async def go(user: str) -> Conn:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        creds = natsauth.resolve_credentials({"HIVE_NATS_CREDS": str(natsauth.creds_path(auth_home, user))})
        assert creds is not None
        opts: dict[str, Any] = creds.connect_options()
        nc = await nats.connect(auth_server.url, name=f"test-{user}", error_cb=on_error,
                                max_reconnect_attempts=0, **opts)
        conns.append(nc)
        return Conn(nc, errors)

    yield go
    for nc in conns:
        if not nc.is_closed:
            await nc.close()


@pytest.fixture(autouse=True)
async def _collect_nats_py_leaks() -> AsyncIterator[None]:
    """nats-py leaves the socket of a connection the server refused or cut
    (auth violation, revoked user) to the garbage collector; these tests do
    that on purpose, so collect it while the loop is alive, warnings ignored."""
    yield
    collect_leaks()
