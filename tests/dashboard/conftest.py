"""Fixtures of the dashboard suite: the real broker and FAKE deployer/backup/harnesses on the real
nats-server, the app, a real uvicorn process.

The broker is the REAL hive-broker, in-process on the services' loop with its own broker.sqlite
in the test's HIVE_HOME. `stack` seeds it through its own subjects (the manager asks for an
approval, alice asks the operator a question and sends two messages) and keeps the ids it
issued in `stack.ids`; `stack.store` reads back what the dashboard made it do. The deployer,
backup and harnesses stay FAKES (tests/dashboard/fakes.py): their real counterparts need
agents' processes, git trees and snapshots each test would have to build.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from litestar.testing import AsyncTestClient
from playwright.async_api import Browser, Page, async_playwright, expect

from hive_dashboard.app import create_app
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from hivewire.wire import ops
from tests.dashboard.fakes import FakeBackup, FakeDeployer, FakeHarness
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


class BrokerStore:
    """The real broker's broker.sqlite, read-only: what the dashboard made the broker do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self, sql: str, *args: Any) -> list[Any]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def sent(self, sender: str = "operator") -> list[tuple[str, str]]:
        """(recipient, body) of every message `sender` sent, in order (a broadcast: one row each)."""
        return [(r[0], r[1]) for r in self._rows(
            "SELECT recipient, body FROM messages WHERE sender = ? AND kind = 'message' ORDER BY id", sender)]

    def resolved(self) -> list[tuple[str, str, str | None]]:
        """(approval id, approve|deny, note) of every resolved approval, in resolution order."""
        return [(str(r[0]), "approve" if r[1] == "approved" else "deny", r[2]) for r in self._rows(
            "SELECT id, status, note FROM approvals WHERE status != 'pending' ORDER BY resolved_at, id")]

    def answers(self) -> list[tuple[str, list[str]]]:
        """(question id, answer) of every answered operator question."""
        import json

        out = []
        for qid, ans in self._rows("SELECT id, answer FROM operator_questions WHERE answered_at IS NOT NULL "
                                   "ORDER BY answered_at, id"):
            try:
                val = json.loads(ans)
            except (TypeError, ValueError):
                val = ans
            out.append((str(qid), val if isinstance(val, list) else [val]))
        return out


@dataclass
class Stack:
    """The services, running on their own event loop in a thread.

    Litestar's test client runs the app on a portal thread and blocks the
    test's loop during each request, so the services must not live on that loop.
    """

    loop: asyncio.AbstractEventLoop
    transport: NatsTransport
    broker: Any  # the real BrokerService
    deployer: FakeDeployer
    backup: FakeBackup
    harnesses: dict[str, FakeHarness]
    store: BrokerStore | None = None
    ids: dict[str, str] = field(default_factory=dict)  # what the seed got: approval, question, inbox, flow

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
    """The real broker, seeded (see the module's doc), with FAKE deployer/backup/harnesses."""
    yield from _stack(nats_url, hive_home, seeded=True)


@pytest.fixture
def real_stack(nats_url: str, hive_home: Path) -> Iterator[Stack]:
    """The real broker, empty but for the known agents, with FAKE deployer/backup/harnesses."""
    yield from _stack(nats_url, hive_home, seeded=False)


async def add_approval(stack: Stack, commit_ref: str) -> str:
    """The manager asks for an apply_commit of its own config at `commit_ref`; the broker's id."""
    c = HiveClient(stack.transport)
    req = wb.ApproveRequest(kind="apply_commit", agent="manager", commit_ref=commit_ref)
    ap = await stack.run(c.request(ops.BROKER_APPROVE, req, agent="manager"))
    return str(ap.approval_id)


async def send_as(stack: Stack, sender: str, to: str, body: str) -> str:
    c = HiveClient(stack.transport)
    return str((await stack.run(c.request(ops.BROKER_SEND, wb.SendRequest(to=to, body=body), agent=sender))).id)


async def _seed(s: Stack, home: Path) -> None:
    """What the old fake broker held: an approval, an open question, one message to the operator, one between agents."""
    c = HiveClient(s.transport)
    s.ids["approval"] = str((await c.request(
        ops.BROKER_APPROVE,
        wb.ApproveRequest(kind="apply_commit", agent="manager", commit_ref=config_commit(home, "manager")),
        agent="manager")).approval_id)
    s.ids["question"] = str((await c.request(
        ops.BROKER_ASK,
        wb.AskRequest(question="Which test suites should I run?", options=["unit", "integration", "e2e"],
                      multi=True), agent="alice")).question_id)
    for key, to, body in (("inbox", "operator", "hello operator"), ("flow", "manager", "status: tests green")):
        s.ids[key] = str((await c.request(ops.BROKER_SEND, wb.SendRequest(to=to, body=body), agent="alice")).id)


def _stack(nats_url: str, hive_home: Path, seeded: bool) -> Iterator[Stack]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fakes", daemon=True)
    thread.start()

    def call(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(15)

    async def build() -> Stack:
        t = await NatsTransport.connect(nats_url, name="dashboard-fakes", forever=False)
        from hive_broker.service import build as build_broker

        settings = Settings.from_env({"HIVE_HOME": str(hive_home)})
        broker = await build_broker(t, settings, "")
        s = Stack(loop, t, broker, FakeDeployer(t, AGENTS, TOMBSTONES), FakeBackup(t),
                  {a: FakeHarness(t, a) for a in AGENTS}, BrokerStore(settings.broker_db))
        for svc in s.services():
            await svc.start()
        await t.flush()
        if seeded:
            for name in AGENTS:
                await HiveClient(t).request(ops.REGISTRY_UPSERT, wb.RegistryRequest(name=name))
            await _seed(s, hive_home)
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


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    """Headless Chromium, one per test."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield b
        await b.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in headless Chromium (1400x1000); a JavaScript error on it fails the test."""
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    p = await ctx.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    await ctx.close()
    assert errors == [], errors


async def log_in(page: Page, dash: Dashboard, path: str) -> None:
    """Log in with the operator token on the login page `path` redirects to, and land on `path`."""
    await page.goto(dash.url + path)
    await page.fill("#token", dash.token)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(dash.url + path)
