"""Snapshots, verify and restore against real sqlite (WAL), git and age."""

from __future__ import annotations

import asyncio
import gzip
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import msgspec
import pytest

from hive_backup import archive
from hive_backup.config import Config
from hive_backup.engine import list_dir, read_manifest
from hive_backup.keys import load_identity
from hive_backup.ops import Backups
from hivewire.db import connect
from hivewire.errors import HiveError

from .conftest import SECRET, make_db, rows, side_files


class Writer(threading.Thread):
    """Commits one row per transaction, as fast as it can, until stopped."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.committed = 0  # highest id known committed
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = connect(self.path, synchronous="NORMAL")
            while not self.stop_flag.is_set():
                cur = conn.execute("INSERT INTO messages(body) VALUES (?)", ("live " + "y" * 200,))
                self.committed = int(cur.lastrowid or 0)
            conn.close()
        except BaseException as exc:
            self.error = exc


async def test_snapshot_under_continuous_writer_is_consistent_and_restores(home: Path, cfg: Config,
                                                                           tmp_path: Path) -> None:
    db = home / "broker.sqlite"
    make_db(db, 30_000)
    writer = Writer(db)
    writer.start()
    try:
        while writer.committed < 31_000:
            await asyncio.sleep(0.01)
        committed_before = writer.committed
        snap = await Backups(home, cfg).run(["databases"])
        after = writer.committed
    finally:
        writer.stop_flag.set()
        writer.join(10)
    assert writer.error is None
    assert after > committed_before  # the writer kept committing during the snapshot
    assert snap.verified is True  # verify + restore drill ran and passed
    f = next(f for f in snap.files if f.source == "broker.sqlite")
    assert f.schema_version == 3
    assert f.rows["messages"] >= committed_before

    scratch = tmp_path / "scratch"
    rep = await Backups(home, cfg).restore(snap.snapshot_id, str(scratch))
    assert "broker.sqlite" in rep.restored
    restored = scratch / "broker.sqlite"
    assert archive.integrity_problems(restored) == []
    assert rows(restored) == f.rows["messages"]
    conn = sqlite3.connect(restored)
    have = conn.execute("SELECT count(*) FROM messages WHERE id <= ?", (committed_before,)).fetchone()[0]
    conn.close()
    assert have == committed_before  # every row committed before the snapshot is there
    assert side_files(restored) == []


async def test_every_layout_item_is_in_the_manifest(home: Path, cfg: Config) -> None:
    make_db(home / "broker-search.sqlite", 5)  # derived from broker.sqlite: rebuilt, never backed up
    make_db(home / "deployer.sqlite", 5)  # any other top-level database is
    snap = await Backups(home, cfg).run()
    sources = {f.source: f for f in snap.files}
    assert {"broker.sqlite", "agents/alpha/state/events.sqlite", "agents/alpha/state/turn-stats.sqlite",
            "agents/alpha/config", "applied/alpha", "meta", "secrets", "sessions", "agents/alpha/state",
            "deployer.sqlite"} <= set(sources)
    assert "broker-search.sqlite" not in sources
    assert sources["broker.sqlite"].rows == {"messages": 200, "schema_version": 1}
    snapdir = home / "backups" / snap.snapshot_id
    assert read_manifest(snapdir).files == snap.files
    # the manifest is what makes a snapshot exist: without it, it is not listed
    (snapdir / "manifest.json").unlink()
    assert [s.snapshot_id for s in list_dir(home / "backups")] == []


async def test_secrets_are_encrypted_and_decrypt_with_the_identity(home: Path, cfg: Config, tmp_path: Path) -> None:
    snap = await Backups(home, cfg).run(["secrets"])
    snapdir = home / "backups" / snap.snapshot_id
    for p in snapdir.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert SECRET.encode() not in data and b"TOPSECRET" not in data, p
            if p.suffix == ".age":
                with pytest.raises(OSError):
                    gzip.decompress(data)
    ident = home / "backup" / "identity.txt"
    assert ident.stat().st_mode & 0o777 == 0o600
    assert (await Backups(home, cfg).verify(snap.snapshot_id, identity=str(ident))).ok
    # without the identity the secrets are skipped, not guessed
    rep = await Backups(home, cfg).restore(snap.snapshot_id, str(tmp_path / "noid"))
    assert rep.skipped == ["secrets: no identity given"]
    # with it they come back, 0600
    out = tmp_path / "withid"
    await Backups(home, cfg).restore(snap.snapshot_id, str(out), identity=str(ident))
    creds = out / "agents/alpha/creds/.credentials.json"
    assert SECRET in creds.read_text()
    assert creds.stat().st_mode & 0o777 == 0o600
    assert (out / "operator.token").read_text() == "op-token-TOPSECRET\n"
    # the identity is a real age identity; a wrong one cannot decrypt
    load_identity(ident)
    other = tmp_path / "other.txt"
    import pyrage

    other.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    rep = await Backups(home, cfg).verify(snap.snapshot_id, identity=str(other))
    assert not rep.ok


async def test_flipped_byte_fails_verify_loudly(home: Path, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:
    b = Backups(home, cfg)
    snap = await b.run(["databases"])
    obj = home / "backups" / snap.snapshot_id / "db/broker.sqlite.gz"
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    rep = await b.verify(snap.snapshot_id)
    assert not rep.ok
    assert any("db/broker.sqlite.gz" in p and "sha256" in p for p in rep.problems)
    assert "backup_verify_failed" in capsys.readouterr().out
    # the failure is recorded: the snapshot is now known bad
    assert [s.verified for s in await b.list()] == [False]
    # and a restore refuses a corrupted object
    with pytest.raises(HiveError):
        await b.restore(snap.snapshot_id, str(home.parent / "scratch"))


async def test_tampered_content_fails_integrity_or_counts(home: Path, cfg: Config, tmp_path: Path) -> None:
    """Even with a matching sha256 (a bad copy at the source), counts are checked."""
    b = Backups(home, cfg)
    snap = await b.run(["databases"])
    snapdir = home / "backups" / snap.snapshot_id
    manifest = read_manifest(snapdir)
    for f in manifest.files:
        if f.source == "broker.sqlite":
            f.rows["messages"] += 1
    (snapdir / "manifest.json").write_bytes(msgspec.json.encode(manifest))
    rep = await b.verify(snap.snapshot_id)
    assert not rep.ok and any("rows in messages" in p for p in rep.problems)


async def test_in_place_restore_refuses_live_db_and_removes_stale_wal(home: Path, cfg: Config) -> None:
    b = Backups(home, cfg)
    snap = await b.run(["databases"])
    db = home / "broker.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]); "
         "c.execute('select count(*) from messages').fetchone(); print('ready', flush=True); time.sleep(60)", str(db)],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
        with pytest.raises(HiveError) as err:
            await b.restore(snap.snapshot_id, str(home), in_place=True)
        assert err.value.code == "conflict"
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    # more rows after the snapshot, and a stale WAL left behind by a crash
    make_db(db, 5)
    for side in ("-wal", "-shm"):
        with open(f"{db}{side}", "wb") as fh:
            fh.write(b"garbage " + side.encode())
    rep = await b.restore(snap.snapshot_id, str(home), in_place=True)
    assert "broker.sqlite" in rep.restored
    assert side_files(db) == []
    assert rows(db) == 200
    # scratch restores never touch HIVE_HOME
    with pytest.raises(HiveError):
        await b.restore(snap.snapshot_id, str(home))


async def test_dir_target_gets_a_full_copy(home: Path, tmp_path: Path) -> None:
    from hive_backup.config import parse_config

    other = tmp_path / "offdisk"
    cfg = parse_config(f'targets = ["local", "{other}"]\n[scheduler]\nenabled = false\n')
    b = Backups(home, cfg)
    snap = await b.run(["databases"])
    assert [s.snapshot_id for s in await b.list(str(other))] == [snap.snapshot_id]
    assert (await b.verify(snap.snapshot_id, target=str(other))).ok
    assert os.listdir(other) == [snap.snapshot_id]


async def test_metrics_follow_runs_and_failures(home: Path, cfg: Config) -> None:
    from prometheus_client import REGISTRY

    from hive_backup import metrics  # noqa: F401  (registers the families)
    from hivewire.metrics import check_name

    def val(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    fails = val("hive_backup_failures_total", stage="verify")
    b = Backups(home, cfg)
    snap = await b.run(["databases"])
    assert val("hive_backup_last_success_timestamp_seconds", cls="databases") == snap.created_at
    assert val("hive_backup_last_verify_ok") == 1.0
    obj = home / "backups" / snap.snapshot_id / "db/broker.sqlite.gz"
    obj.write_bytes(obj.read_bytes()[:-5])
    assert not (await b.verify(snap.snapshot_id)).ok
    assert val("hive_backup_failures_total", stage="verify") == fails + 1
    for fam in REGISTRY.collect():
        if fam.name.startswith("hive_backup"):
            assert check_name(fam.name + ("_total" if fam.type == "counter" else ""), fam.type) == []
