"""Fixtures of the dashboard suite: FAKE services on the real nats-server, the app, a real uvicorn process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from litestar.testing import AsyncTestClient

from hive_dashboard.app import create_app
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from tests.dashboard.fakes import FakeBackup, FakeBroker, FakeDeployer, FakeHarness
from tests.support.procs import ServiceProcess

T = TypeVar("T")
TOKEN = "test-operator-token-0123456789"
TEST_HOST = "testserver.local"
AGENTS = ["alice", "manager"]
TOMBSTONES = ["bob"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """The FAKE services, running on their own event loop in a thread.

    Litestar's test client runs the app on a portal thread and blocks the
    test's loop during each request, so the fakes must not live on that loop.
    """

    loop: asyncio.AbstractEventLoop
    transport: NatsTransport
    broker: Any  # FakeBroker, or the real BrokerService in real_stack
    deployer: FakeDeployer
    backup: FakeBackup
    harnesses: dict[str, FakeHarness]

    def services(self) -> list[Any]:
        return [self.broker, self.deployer, self.backup, *self.harnesses.values()]

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the fakes' loop and await its result."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))


def config_commit(home: Path, agent: str) -> str:
    """A real proposed-config git repo with one change, as the deployer would leave it; returns the sha."""
    repo = home / "agents" / agent / "config"
    if (repo / ".git").exists():
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()
    repo.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "manager", "GIT_AUTHOR_EMAIL": "m@hive", "GIT_COMMITTER_NAME": "manager",
           "GIT_COMMITTER_EMAIL": "m@hive"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    (repo / "agent.nix").write_text('{ model = "haiku"; }\n')
    git("add", ".")
    git("commit", "-qm", "initial config")
    (repo / "agent.nix").write_text('{ model = "sonnet"; tools = [ "git" ]; }\n')
    git("commit", "-qam", "switch to sonnet, add git")
    return git("rev-parse", "HEAD")


@pytest.fixture
def stack(nats_url: str, hive_home: Path) -> Iterator[Stack]:
    """FAKE broker/deployer/backup and one FAKE harness per agent, on the real nats-server."""
    yield from _stack(nats_url, hive_home, real_broker=False)


@pytest.fixture
def real_stack(nats_url: str, hive_home: Path) -> Iterator[Stack]:
    """The REAL hive-broker (in-process, its own broker.sqlite) with FAKE deployer/backup/harnesses."""
    yield from _stack(nats_url, hive_home, real_broker=True)


def _stack(nats_url: str, hive_home: Path, real_broker: bool) -> Iterator[Stack]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fakes", daemon=True)
    thread.start()

    def call(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(15)

    async def build() -> Stack:
        t = await NatsTransport.connect(nats_url, name="dashboard-fakes", forever=False)
        broker: Any
        if real_broker:
            from hive_broker.service import build as build_broker

            broker = await build_broker(t, Settings.from_env({"HIVE_HOME": str(hive_home)}), "")
        else:
            broker = FakeBroker(t, AGENTS, config_commit(hive_home, "manager"))
        s = Stack(loop, t, broker, FakeDeployer(t, AGENTS, TOMBSTONES), FakeBackup(t),
                  {a: FakeHarness(t, a) for a in AGENTS})
        for svc in s.services():
            await svc.start()
        await t.flush()
        return s

    async def teardown(s: Stack) -> None:
        for svc in s.services():
            await svc.stop()
        await s.transport.close()

    s = call(build())
    try:
        yield s
    finally:
        call(teardown(s))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def dash_settings(hive_home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HIVE_OPERATOR_TOKEN", TOKEN)
    monkeypatch.setenv("HIVE_DASHBOARD_ADDR", f"127.0.0.1:{free_port()}")
    # the in-process test client's host (`client` below); the Host check refuses any other
    monkeypatch.setenv("HIVE_DASHBOARD_ALLOWED_HOSTS", TEST_HOST)
    return Settings.from_env()


@pytest.fixture
async def client(dash_settings: Settings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """The app in-process (Litestar's test client), connected to NATS; not logged in."""
    app = create_app(dash_settings)
    async with AsyncTestClient(app=app, base_url=f"https://{TEST_HOST}") as c:
        yield c


async def login(c: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    page = await c.get("/login")
    csrf = c.cookies.get("hive_csrf")
    assert page.status_code == 200 and csrf
    return await c.post("/login", data={"token": token, "_csrf": csrf, "next": "/"}, follow_redirects=False)


@pytest.fixture
async def authed(client: AsyncTestClient) -> AsyncTestClient:  # type: ignore[type-arg]
    r = await login(client)
    assert r.status_code == 303, r.text
    client.headers["X-CSRF-Token"] = client.cookies["hive_csrf"]
    return client


@dataclass
class Dashboard:
    url: str
    proc: ServiceProcess
    token: str = TOKEN


@pytest.fixture
async def dashboard(dash_settings: Settings, tmp_path: Path, nats_url: str) -> AsyncIterator[Dashboard]:
    """The dashboard as a real `python -m hive_dashboard` (uvicorn) process."""
    env = {
        "HIVE_HOME": str(dash_settings.home), "HIVE_NATS_URL": nats_url, "HIVE_OPERATOR_TOKEN": TOKEN,
        "HIVE_DASHBOARD_ADDR": dash_settings.dashboard_addr, "HIVE_DASHBOARD_PING_S": "0.5",
        "HIVE_DASHBOARD_STALE_S": "3",
    }
    proc = ServiceProcess("dashboard", env, tmp_path / "logs").start()
    url = f"http://{dash_settings.dashboard_addr}"
    try:
        async with httpx.AsyncClient() as c:
            for _ in range(200):
                try:
                    r = await c.get(url + "/healthz")
                    if r.status_code == 200 and r.json()["nats"] == "connected":
                        break
                except httpx.HTTPError:
                    pass
                assert proc.proc is not None and proc.proc.poll() is None, proc.log()
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("dashboard did not come up:\n" + proc.log())
        yield Dashboard(url, proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def chromium_path() -> Iterator[str]:
    path = "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.skip("chromium not installed")
    yield path
