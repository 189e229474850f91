"""HIVE_BROKER_SYNC: the durability mode, how it is read, shown, and what `normal`
(the default) promises beyond kill -9: acknowledged sends reach the database file,
through a checkpoint that fsyncs the WAL first, within about a second."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from hive_broker.config import BrokerConfig
from hive_broker.service import BrokerService
from hivewire.settings import Settings

from .conftest import Bus, eventually


@pytest.mark.parametrize(
    ("value", "mode"),
    [(None, "NORMAL"), ("", "NORMAL"), ("normal", "NORMAL"), ("NORMAL", "NORMAL"),
     ("full", "FULL"), (" Full ", "FULL")],
)
def test_the_mode_comes_from_the_environment(value: str | None, mode: str) -> None:
    env = {} if value is None else {"HIVE_BROKER_SYNC": value}
    assert BrokerConfig.from_env(env).sync == mode


@pytest.mark.parametrize("value", ["fulll", "off", "extra", "1"])
def test_a_mistyped_mode_stops_the_broker_instead_of_guessing(value: str) -> None:
    with pytest.raises(ValueError, match=f"^HIVE_BROKER_SYNC={value}: must be one of normal, full$"):
        BrokerConfig.from_env({"HIVE_BROKER_SYNC": value})


@pytest.mark.parametrize("mode", ["NORMAL", "FULL"])
async def test_the_store_runs_in_the_configured_mode_and_says_so(
    nats_transport: object, settings: Settings, mode: str
) -> None:
    svc = BrokerService(nats_transport, settings, config=BrokerConfig(sync=mode))  # type: ignore[arg-type]
    await svc.start()
    try:
        # PRAGMA synchronous: 1 NORMAL, 2 FULL, read on the broker's own connections
        got = await svc.db.read(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        assert got == {"NORMAL": 1, "FULL": 2}[mode]
        assert svc.metadata()["sync"] == mode.lower()  # what `nats micro info hive-broker` shows
    finally:
        await svc.stop()


def _in_db_file(db: Path, tmp: Path, body: str) -> bool:
    """Is `body` in the main database file itself, reading no WAL (what a power loss
    would leave if the WAL's unsynced tail were gone)?"""
    copy = tmp / "main-file-only.sqlite"
    shutil.copyfile(db, copy)
    try:
        conn = sqlite3.connect(f"file:{copy}?immutable=1", uri=True)
        try:
            return conn.execute("SELECT 1 FROM messages WHERE body = ?", (body,)).fetchone() is not None
        finally:
            conn.close()
    except sqlite3.DatabaseError:  # copied mid-checkpoint: look again
        return False


async def test_normal_mode_gets_acked_sends_into_the_database_file_within_seconds(
    bus: Bus, broker: BrokerService, settings: Settings, tmp_path: Path
) -> None:
    assert broker.config.sync == "NORMAL"
    body = f"durable by checkpoint {time.time()}"
    started = time.monotonic()
    await bus.send("alice", "bob", body)  # committed to the WAL, not fsynced

    async def landed() -> bool:
        return _in_db_file(settings.broker_db, tmp_path, body)

    await eventually(landed, timeout=5.0)
    assert time.monotonic() - started < 3.0  # the reader's checkpoint runs every second
