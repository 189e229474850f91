"""hive-backup over a real nats-server: endpoints, JetStream target, errors, schedule."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from hive_backup.config import parse_config
from hive_backup.schedule import FakeClock
from hive_backup.service import BackupService
from hivewire import codec, subjects
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import ops
from hivewire.wire.backup import (
    BackupDone,
    ListRequest,
    PruneRequest,
    RestoreRequest,
    RunRequest,
    VerifyRequest,
)
from hivewire.wire.common import ErrorReply

from .conftest import populate, rows

LONG = 60.0


def config_text(bucket: str, scheduler: bool = False) -> str:
    return (f'targets = ["local", "jetstream"]\njetstream_bucket = "{bucket}"\n'
            f"[scheduler]\nenabled = {'true' if scheduler else 'false'}\ncatch_up = false\n")


@pytest.fixture
def bucket() -> str:
    return "test-" + os.urandom(4).hex()


@pytest.fixture
async def service(settings: Settings, nats_transport: NatsTransport, bucket: str) -> AsyncIterator[BackupService]:
    populate(settings.home)
    svc = BackupService(nats_transport, settings, config=parse_config(config_text(bucket)))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def done_events(nats_transport: NatsTransport) -> AsyncIterator[list[BackupDone]]:
    got: list[BackupDone] = []

    async def on(msg: object) -> None:
        got.append(msgspec.json.decode(msg.data, type=BackupDone))  # type: ignore[attr-defined]

    sub = await nats_transport.subscribe(subjects.BACKUP_DONE, on)
    yield got
    await sub.unsubscribe()


async def test_endpoints_and_jetstream_round_trip(service: BackupService, nats_transport: NatsTransport,
                                                  settings: Settings, tmp_path: Path,
                                                  done_events: list[BackupDone], bucket: str) -> None:
    client = HiveClient(nats_transport, timeout=LONG)
    snap = await client.request(ops.BACKUP_RUN, RunRequest())
    assert snap.verified is True
    assert {f.source for f in snap.files} >= {"broker.sqlite", "secrets", "meta"}

    async def got_done() -> bool:
        return any(d.snapshot_id == snap.snapshot_id for d in done_events)

    for _ in range(100):
        if await got_done():
            break
        await asyncio.sleep(0.05)
    done = next(d for d in done_events if d.snapshot_id == snap.snapshot_id)
    assert done.ok and done.bytes == snap.bytes and done.verified is True

    listed = await client.request(ops.BACKUP_LIST, ListRequest())
    assert [s.snapshot_id for s in listed.snapshots] == [snap.snapshot_id]
    ident = str(settings.home / "backup" / "identity.txt")
    rep = await client.request(ops.BACKUP_VERIFY, VerifyRequest(snapshot_id=snap.snapshot_id, identity=ident))
    assert rep.ok and rep.checked == len(snap.files)

    # the JetStream object store holds the same snapshot, manifest included
    js = await client.request(ops.BACKUP_LIST, ListRequest(target="jetstream"))
    assert [s.snapshot_id for s in js.snapshots] == [snap.snapshot_id]
    assert js.snapshots[0].files == snap.files
    rep = await client.request(ops.BACKUP_VERIFY,
                               VerifyRequest(snapshot_id=snap.snapshot_id, target="jetstream", identity=ident))
    assert rep.ok
    dest = tmp_path / "from-js"
    restored = await client.request(ops.BACKUP_RESTORE, RestoreRequest(
        snapshot_id=snap.snapshot_id, dest=str(dest), target="jetstream", identity=ident))
    assert "broker.sqlite" in restored.restored and "operator.token" in restored.restored
    assert rows(dest / "broker.sqlite") == 200
    assert (dest / "meta" / "flake.nix").exists()

    pruned = await client.request(ops.BACKUP_PRUNE, PruneRequest(dry_run=True))
    assert pruned.kept == [snap.snapshot_id] and pruned.deleted == []


async def test_garbage_payloads_get_structured_errors(service: BackupService, nats_transport: NatsTransport,
                                                      tmp_path: Path) -> None:
    cases: list[tuple[str, bytes, str]] = [
        ("run", b"not json", "bad_request"),
        ("run", b"[1,2]", "bad_request"),
        ("run", b'{"classes": "databases"}', "bad_request"),
        ("run", b'{"classes": ["nope"]}', "bad_request"),
        ("list", b"\xff\xfe", "bad_request"),
        ("list", b'{"target": "/not/configured"}', "bad_request"),
        ("verify", b"{}", "bad_request"),
        ("verify", b'{"snapshot_id": 5}', "bad_request"),
        ("verify", b'{"snapshot_id": "../../etc/passwd"}', "bad_request"),
        ("verify", b'{"snapshot_id": "20250101T000000Z-abcdef"}', "not_found"),
        ("verify", b'{"snapshot_id": "20250101T000000Z-abcdef", "identity": "rel/path"}', "bad_request"),
        ("restore", b'{"snapshot_id": "20250101T000000Z-abcdef"}', "bad_request"),
        ("restore", b'{"snapshot_id": "20250101T000000Z-abcdef", "dest": "relative"}', "bad_request"),
        ("restore", b'{"snapshot_id": "20250101T000000Z-abcdef", "dest": "/tmp/x", "in_place": true}', "conflict"),
        ("prune", b'{"dry_run": "yes"}', "bad_request"),
    ]
    for verb, payload, code in cases:
        msg = await nats_transport.request(subjects.backup(verb), payload, timeout=10)
        err = msgspec.json.decode(msg.data, type=ErrorReply)
        assert err.error.code == code, (verb, payload, err)
        assert msg.headers.get(codec.HIVE_CODE_HEADER) == code
    client = HiveClient(nats_transport, timeout=LONG)
    assert (await client.request(ops.BACKUP_LIST, ListRequest())).snapshots == []
    with pytest.raises(HiveError) as exc:
        await client.request(ops.BACKUP_VERIFY, VerifyRequest(snapshot_id="nope"))
    assert exc.value.code == "bad_request"


async def test_schedule_fires_through_the_service(settings: Settings, nats_transport: NatsTransport, bucket: str,
                                                  done_events: list[BackupDone]) -> None:
    populate(settings.home)
    clock = FakeClock(datetime(2025, 3, 3, 17, 59).timestamp())
    svc = BackupService(nats_transport, settings, config=parse_config(config_text(bucket, scheduler=True)),
                        clock=clock)
    await svc.start()
    try:
        await clock.advance(30)
        assert done_events == []
        await clock.advance(31)
        for _ in range(400):
            if done_events:
                break
            await asyncio.sleep(0.05)
        assert len(done_events) == 1 and done_events[0].ok
        assert done_events[0].classes == ["databases", "repos", "secrets"]
    finally:
        await svc.stop()
