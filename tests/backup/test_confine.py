"""Confinement (issue 21): a snapshot is data, never trusted paths; discovery never follows a symlink.

Restore side: crafted manifests and tar members are refused, the refusal names
the path, and nothing changes on disk. Discovery side: an agent's symlinks,
symlinked dirs and FIFOs put none of their targets' bytes into a snapshot.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sqlite3
import tarfile
from pathlib import Path

import msgspec
import pytest

from hive_backup import archive, confine, keys, safetar
from hive_backup.config import Config
from hive_backup.engine import read_manifest
from hive_backup.ops import Backups
from hivewire.errors import HiveError
from hivewire.wire.backup import Snapshot

from .conftest import make_db, write_secret

MARKER = "MARKER-7f3a9c-never-in-a-snapshot"


def listing(root: Path) -> dict[str, str]:
    """Every path under `root` (not following symlinks) with its content hash or link target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[str(p)] = "-> " + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                out[str(p)] = "dir"
            else:
                out[str(p)] = "special"
    return out


def exists(path: str) -> bool:
    return os.path.lexists(path)


def write_manifest(snapdir: Path, snap: Snapshot) -> None:
    (snapdir / "manifest.json").write_bytes(msgspec.json.encode(snap))


def replace_object(snapdir: Path, source: str, data: bytes) -> None:
    """What an attacker with write access to a target can do: new bytes, manifest hashes to match."""
    snap = read_manifest(snapdir)
    f = next(f for f in snap.files if f.source == source)
    (snapdir / f.name).write_bytes(data)
    f.sha256 = hashlib.sha256(data).hexdigest()
    f.stored_size = len(data)
    write_manifest(snapdir, snap)


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return raw, gzip.compress(raw)


def member(name: str, data: bytes | None = b"x", type_: bytes = tarfile.REGTYPE, link: str = "") -> tuple[
        tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = link
    info.mode = 0o644
    return info, data if type_ == tarfile.REGTYPE else None


STATE = "agents/alpha/state"
GOOD = member(f"{STATE}/model", b"opus\n")  # a harmless member first: it must not be written either


@pytest.fixture
async def snapped(home: Path, cfg: Config) -> tuple[Backups, str, Path]:
    b = Backups(home, cfg)
    snap = await b.run(["databases", "bulky", "secrets"])
    assert snap.verified is True
    return b, snap.snapshot_id, home / "backups" / snap.snapshot_id


async def refused(b: Backups, sid: str, dest: Path, needle: str, **kw: object) -> None:
    """The restore refuses, naming `needle`, and leaves dest's parent exactly as it was."""
    before = listing(dest.parent)
    with pytest.raises(HiveError) as err:
        await b.restore(sid, str(dest), **kw)  # type: ignore[arg-type]
    assert err.value.code == "forbidden", err.value
    assert needle in str(err.value), err.value
    assert listing(dest.parent) == before  # no dest, no scratch dir left behind, nothing outside


# --- paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["/etc/x", "../../etc/x", "a/../../x", "a//b", "./a", "a/", "", "a\x00b",
                                  "x" * 256, "a/" * 3000])
def test_check_relpath_refuses(name: str) -> None:
    with pytest.raises(confine.UnsafePath):
        confine.check_relpath(name)


def test_check_relpath_accepts_odd_but_confined_names() -> None:
    assert confine.check_relpath("agents/alpha/state/..x/ev il\n.txt") == ("agents", "alpha", "state", "..x",
                                                                          "ev il\n.txt")


def test_tarfile_has_the_data_filter() -> None:
    """Python 3.11.4+ has tarfile.data_filter; check_members relies on it as a second opinion."""
    with pytest.raises(tarfile.FilterError):
        tarfile.data_filter(tarfile.TarInfo("../../etc/passwd"), "/tmp/dest")
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    with pytest.raises(tarfile.FilterError):
        tarfile.data_filter(dev, "/tmp/dest")
    # an absolute name it quietly strips instead: our own check is the one that refuses it
    assert tarfile.data_filter(tarfile.TarInfo("/etc/passwd"), "/tmp/dest").name == "etc/passwd"


# --- manifests ----------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "name", "needle"), [
    ("ABS/evil.sqlite", "db/ABS/evil.sqlite.gz", "ABS/evil.sqlite"),  # ABS: an absolute dir outside
    ("../../etc/x", "db/../../etc/x.gz", "../../etc/x"),
    ("broker.sqlite", "db/../../../etc/passwd", "db/../../../etc/passwd"),  # an object read from outside
    ("broker.sqlite", "db/other.sqlite.gz", "db/other.sqlite.gz"),  # not the name its source gives
    ("backup/recipients.txt", "db/backup/recipients.txt.gz", "backup/recipients.txt"),  # our own keys
    ("bro\x00ker.sqlite", "db/bro\x00ker.sqlite.gz", "NUL"),
])
async def test_crafted_manifest_paths_are_refused_and_nothing_changes(
        snapped: tuple[Backups, str, Path], tmp_path: Path, source: str, name: str, needle: str) -> None:
    b, sid, snapdir = snapped
    outside = tmp_path / "outside"
    outside.mkdir()
    source, name, needle = (x.replace("ABS", str(outside)) for x in (source, name, needle))
    snap = read_manifest(snapdir)
    f = next(f for f in snap.files if f.source == "broker.sqlite")
    f.source, f.name = source, name
    write_manifest(snapdir, snap)
    await refused(b, sid, tmp_path / "dest", needle)
    assert list(outside.iterdir()) == []
    rep = await b.verify(sid)
    assert not rep.ok and rep.problems[0].startswith("manifest:") and needle in rep.problems[0]


async def test_stored_object_that_is_a_symlink_is_refused(snapped: tuple[Backups, str, Path],
                                                          tmp_path: Path) -> None:
    b, sid, snapdir = snapped
    obj = snapdir / "db/broker.sqlite.gz"
    elsewhere = tmp_path / "elsewhere.gz"
    os.rename(obj, elsewhere)
    obj.symlink_to(elsewhere)  # same bytes, same sha256: only the symlink is wrong
    await refused(b, sid, tmp_path / "dest", "db/broker.sqlite.gz")
    rep = await b.verify(sid)
    assert not rep.ok and any("symlink" in p for p in rep.problems), rep.problems


async def test_database_gzip_bomb_is_refused(snapped: tuple[Backups, str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    b, sid, _ = snapped
    monkeypatch.setattr(confine, "MAX_MEMBER_BYTES", 4096)  # broker.sqlite is bigger than this
    await refused(b, sid, tmp_path / "dest", "decompresses to more than 4096 bytes")


# --- tar members --------------------------------------------------------------------------
CRAFTED: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes | None]], str]] = {
    "absolute": ([GOOD, member("/tmp/hive-evil-abs")], "/tmp/hive-evil-abs"),
    "dotdot": ([GOOD, member(f"{STATE}/../../../../etc/x")], "../../etc/x"),
    "symlink": ([GOOD, member(f"{STATE}/link", type_=tarfile.SYMTYPE, link="/etc/shadow")], f"{STATE}/link"),
    "hardlink": ([GOOD, member(f"{STATE}/hl", type_=tarfile.LNKTYPE, link="/etc/shadow")], f"{STATE}/hl"),
    "device": ([GOOD, member(f"{STATE}/dev", type_=tarfile.CHRTYPE)], f"{STATE}/dev"),
    "fifo": ([GOOD, member(f"{STATE}/fifo", type_=tarfile.FIFOTYPE)], f"{STATE}/fifo"),
    "outside its tree": ([GOOD, member("broker.sqlite", b"not a db")], "broker.sqlite"),
    "duplicate": ([GOOD, member(f"{STATE}/model", b"again")], "duplicate"),
    "too many": ([GOOD, *[member(f"{STATE}/f{i}") for i in range(5)]], "more than 3 members"),
    "oversize": ([GOOD, member(f"{STATE}/big", b"b" * 5000)], f"{STATE}/big"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
async def test_crafted_tree_members_are_refused_and_nothing_changes(
        snapped: tuple[Backups, str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    b, sid, snapdir = snapped
    members, needle = CRAFTED[case]
    monkeypatch.setattr(confine, "MAX_TAR_MEMBERS", 3)
    monkeypatch.setattr(confine, "MAX_MEMBER_BYTES", 1 << 20 if case != "oversize" else 1000)
    _, gz = tar_gz(members)
    replace_object(snapdir, STATE, gz)
    # the whole snapshot (broker.sqlite is restored into the scratch dir first, then thrown away);
    # the oversize case only its tree, as the limit would refuse the database first
    await refused(b, sid, tmp_path / "dest", needle, only=[STATE] if case == "oversize" else None)
    assert not exists("/tmp/hive-evil-abs")
    rep = await b.verify(sid)
    assert not rep.ok and any(STATE in p for p in rep.problems), rep.problems


async def test_crafted_secrets_member_is_refused(snapped: tuple[Backups, str, Path], home: Path,
                                                 tmp_path: Path) -> None:
    """The secrets tar is encrypted, but to a public key: anyone can craft one."""
    b, sid, snapdir = snapped
    raw, gz = tar_gz([member("operator.token", b"tok"), member("../../../../tmp/hive-evil-secret")])
    recipients = keys.load_recipients(home, b.cfg, generate=False)
    blob = keys.encrypt(gz, recipients)
    replace_object(snapdir, "secrets", blob)
    snap = read_manifest(snapdir)
    next(f for f in snap.files if f.source == "secrets").content_sha256 = hashlib.sha256(raw).hexdigest()
    write_manifest(snapdir, snap)
    ident = str(home / "backup" / "identity.txt")
    await refused(b, sid, tmp_path / "dest", "hive-evil-secret", identity=ident)
    assert not exists("/tmp/hive-evil-secret")
    assert not (await b.verify(sid, identity=ident)).ok


# --- in place: the destination is HIVE_HOME, which agents write ---------------------------
async def test_in_place_refuses_a_symlinked_parent_and_changes_nothing(
        snapped: tuple[Backups, str, Path], home: Path, tmp_path: Path) -> None:
    b, sid, _ = snapped
    make_db(home / "broker.sqlite", 7)  # newer than the snapshot: a restore would change it
    outside = tmp_path / "outside"
    outside.mkdir()
    state = home / STATE
    os.rename(state, tmp_path / "moved-state")
    state.symlink_to(outside)  # the agent's trick: restore writes events.sqlite "into its state"
    before_home, before_out = listing(home), listing(outside)
    with pytest.raises(HiveError) as err:
        await b.restore(sid, str(home), in_place=True, identity=str(home / "backup" / "identity.txt"))
    assert err.value.code == "forbidden" and STATE in str(err.value), err.value
    assert listing(outside) == before_out == {}
    assert listing(home) == before_home  # broker.sqlite untouched, no scratch dir left


async def test_in_place_round_trip_through_dir_fds(snapped: tuple[Backups, str, Path], home: Path) -> None:
    b, sid, _ = snapped
    ident = str(home / "backup" / "identity.txt")
    make_db(home / "broker.sqlite", 7)
    (home / STATE / "model").write_text("changed\n")
    creds = home / "agents/alpha/creds/.credentials.json"
    creds.unlink()
    creds.symlink_to("/etc/hostname")  # a symlink at the leaf is replaced, never written through
    rep = await b.restore(sid, str(home), in_place=True, identity=ident)
    assert {"broker.sqlite", f"{STATE}/model", "agents/alpha/creds/.credentials.json"} <= set(rep.restored)
    assert (home / STATE / "model").read_text() == "opus\n"
    assert not creds.is_symlink() and "sk-ant-SUPERSECRET" in creds.read_text()
    assert creds.stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(home / "broker.sqlite")
    assert conn.execute("select count(*) from messages").fetchone()[0] == 200
    conn.close()
    assert not [n for n in os.listdir(home) if ".restore-" in n]


# --- discovery: an agent's symlinks, symlinked dirs and FIFOs --------------------------------
def plant(home: Path, outside: Path) -> None:
    outside.mkdir()
    write_secret(outside / "secret.txt", f"{MARKER} file\n")
    (outside / "dir").mkdir()
    (outside / "dir" / "inner.txt").write_text(f"{MARKER} in a dir\n")
    make_db(outside / "other.sqlite", 3)
    conn = sqlite3.connect(outside / "other.sqlite")
    conn.execute("insert into messages(body) values (?)", (MARKER,))
    conn.commit()
    conn.close()
    state, creds = home / STATE, home / "agents/alpha/creds"
    (state / "leak").symlink_to(outside / "secret.txt")
    (state / "linkdir").symlink_to(outside / "dir")
    (state / "stolen.sqlite").symlink_to(outside / "other.sqlite")
    (state / "loop").symlink_to(state)
    os.mkfifo(state / "pipe")
    os.mkfifo(state / "pipe.sqlite")
    (creds / "token-link").symlink_to(outside / "secret.txt")
    (creds / "credsdir").symlink_to(outside / "dir")
    os.mkfifo(creds / "pipe")
    # a whole agent dir that is a symlink, and an agent whose state/ is one
    (home / "agents/evil").symlink_to(outside)
    (outside / "state").symlink_to(outside / "dir")
    (home / "agents/beta").mkdir()
    (home / "agents/beta/state").symlink_to(outside / "dir")
    (home / "agents/beta/creds").symlink_to(outside / "dir")


def unpacked(snapdir: Path, ident: str) -> list[bytes]:
    """Every object's content: decompressed, decrypted, and every tar member's bytes."""
    out = []
    for p in snapdir.rglob("*"):
        if not p.is_file():
            continue
        data = p.read_bytes()
        out.append(data)
        if p.suffix == ".age":
            data = gzip.decompress(keys.decrypt(data, keys.load_identity(ident)))
        elif p.suffix == ".gz":
            data = gzip.decompress(data)
        else:
            continue
        out.append(data)
        if p.name.endswith((".tar.gz", ".tar.gz.age")):
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for m in tar.getmembers():
                    assert m.isreg(), m.name  # never a link member
                    f = tar.extractfile(m)
                    assert f is not None
                    out.append(f.read())
    return out


@pytest.mark.timeout(60)  # a FIFO opened for a blocking read would hang the snapshot
async def test_agent_symlinks_and_fifos_put_nothing_into_a_snapshot(home: Path, cfg: Config,
                                                                    tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    def skipped(reason: str) -> float:
        return REGISTRY.get_sample_value("hive_backup_skipped_files_total", {"reason": reason}) or 0.0

    plant(home, tmp_path / "outside")
    sym0, special0 = skipped("symlink"), skipped("special")
    b = Backups(home, cfg)
    snap = await b.run()
    assert snap.verified is True
    snapdir = home / "backups" / snap.snapshot_id
    ident = str(home / "backup" / "identity.txt")
    contents = unpacked(snapdir, ident)
    assert not [c for c in contents if MARKER.encode() in c]
    # the ordinary files are all there
    assert any(c == b"opus\n" for c in contents)
    assert any(b"sk-ant-SUPERSECRET" in c for c in contents)
    sources = {f.source for f in snap.files}
    assert "agents/alpha/state/stolen.sqlite" not in sources and not any("evil" in s or "beta" in s
                                                                         for s in sources)
    # recorded as nothing: counted, and said in the snapshot
    assert skipped("symlink") - sym0 >= 8 and skipped("special") - special0 >= 3
    assert any(s.startswith("files skipped") and "symlink=" in s and "special=" in s for s in snap.skipped)
    # and the restore of it is clean
    rep = await b.restore(snap.snapshot_id, str(tmp_path / "dest"), identity=ident)
    assert f"{STATE}/model" in rep.restored
    assert MARKER not in "".join(listing(tmp_path / "dest"))


def test_file_swapped_for_a_symlink_after_listing_is_not_followed(home: Path, tmp_path: Path) -> None:
    """TOCTOU: listed as a regular file, a symlink by the time it is read."""
    outside = tmp_path / "secret.txt"
    outside.write_text(MARKER)
    victim = home / STATE / "notes.txt"
    victim.write_text("notes\n")
    skips = confine.Skips()
    rels = confine.walk_files(home, STATE, skips)
    assert f"{STATE}/notes.txt" in rels
    victim.unlink()
    victim.symlink_to(outside)  # the swap
    raw, _, added = archive.tar_gz_bytes(home, rels, 1, skips)
    assert MARKER.encode() not in raw
    assert skips.found[f"{STATE}/notes.txt"] == "symlink"
    assert added == len(rels) - 1
    # a parent dir swapped for a symlink is refused too
    (home / STATE / "sub").mkdir()
    (home / STATE / "sub/x.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/x.txt").write_text(MARKER)
    rels = confine.walk_files(home, STATE, skips)
    os.rename(home / STATE / "sub", tmp_path / "realsub")
    (home / STATE / "sub").symlink_to(tmp_path / "sub")
    raw, _, _ = archive.tar_gz_bytes(home, rels, 1, skips)
    assert MARKER.encode() not in raw


def test_database_swapped_for_a_symlink_is_not_copied(home: Path, tmp_path: Path) -> None:
    db = home / STATE / "events.sqlite"
    st = db.stat()
    other = tmp_path / "other.sqlite"
    make_db(other, 3)
    os.rename(db, tmp_path / "moved.sqlite")
    db.symlink_to(other)  # swapped after the check, before sqlite opens it
    with pytest.raises(confine.UnsafePath):
        archive.sqlite_copy(db, tmp_path / "copy.sqlite", expect=(st.st_dev, st.st_ino))
    assert not (tmp_path / "copy.sqlite").exists()
    # the unswapped file copies fine
    os.unlink(db)
    os.rename(tmp_path / "moved.sqlite", db)
    archive.sqlite_copy(db, tmp_path / "copy.sqlite", expect=(st.st_dev, st.st_ino))
    assert archive.integrity_problems(tmp_path / "copy.sqlite") == []


def test_open_file_never_opens_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(confine.NotRegular) as err:
        confine.open_file(tmp_path, "pipe")
    assert err.value.reason == "special"


def test_gunzip_bytes_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * (1 << 20))
    with pytest.raises(confine.UnsafePath):
        safetar.gunzip_bytes(bomb, 1000)
    assert safetar.gunzip_bytes(bomb, 1 << 20) == b"\0" * (1 << 20)

