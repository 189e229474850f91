"""Fixtures shared by every test: a real nats-server, a temporary HIVE_HOME."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server (JetStream on) per test session, on a free port."""
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


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
