"""Issue 21: agent archives carry git bundles; crafted archives are refused and change nothing."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from hive_deployer import archive, git, repos
from hive_deployer.layout import Layout
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.deployer import ExportRequest, ImportRequest, SpawnRequest
from tests.support import evilgit

MANIFEST = {"format": archive.FORMAT, "name": "mallory", "exported_at": 0, "include_creds": False, "agent": {},
            "repos": {}}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its type and size: what 'nothing changed' compares."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            st = os.lstat(os.path.join(dirpath, n))
            out[os.path.relpath(os.path.join(dirpath, n), root)] = (st.st_mode, st.st_size if n in files else 0)
    return out


def info(name: str, **kw: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def craft(path: Path, *extra: tuple[tarfile.TarInfo, bytes | None], manifest: dict[str, object] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        m = json.dumps(manifest or MANIFEST).encode()
        tar.addfile(info("manifest.json", size=len(m)), io.BytesIO(m))
        tar.addfile(info("state/ok.md", size=3), io.BytesIO(b"ok\n"))
        for ti, data in extra:
            if data is not None:
                ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def raw_git_archive(path: Path, tmp: Path, marker: Path) -> Path:
    """An old-style (hive-agent-export/1) archive: config/ with a raw .git whose config runs a script."""
    repo = tmp / "src-config"
    repo.mkdir()
    git.init(repo)
    (repo / "agent.nix").write_text("{ }\n")
    git.commit_all(repo, "x")
    evilgit.poison(repo, marker)
    with tarfile.open(path, "w:gz") as tar:
        m = json.dumps({**MANIFEST, "format": "hive-agent-export/1"}).encode()
        tar.addfile(info("manifest.json", size=len(m)), io.BytesIO(m))
        tar.add(repo, arcname="config")
    return path


CASES: dict[str, tuple[Callable[[Path, Path, Path], Path], str]] = {
    "dotdot": (lambda p, t, m: craft(p, (info("state/../../escape"), b"x")), "'..'"),
    "absolute": (lambda p, t, m: craft(p, (info("/tmp/escape"), b"x")), "absolute"),
    "symlink": (lambda p, t, m: craft(p, (info("state/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"), None)),
                "a symlink"),
    "hardlink": (lambda p, t, m: craft(p, (info("state/hard", type=tarfile.LNKTYPE, linkname="state/ok.md"), None)),
                 "a hardlink"),
    "device": (lambda p, t, m: craft(p, (info("state/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3), None)),
               "a device"),
    "fifo": (lambda p, t, m: craft(p, (info("state/pipe", type=tarfile.FIFOTYPE), None)), "a fifo"),
    "raw .git": (raw_git_archive, "raw .git"),
    "top level": (lambda p, t, m: craft(p, (info("nats/creds"), b"x")), "outside"),
    "duplicate": (lambda p, t, m: craft(p, (info("state/ok.md"), b"again")), "twice"),
    "too many": (lambda p, t, m: craft(p, *[(info(f"state/f{i}"), b"") for i in range(20)]), "more than 10 members"),
    "oversize": (lambda p, t, m: craft(p, (info("state/big"), b"x" * 5000)), "more than 4096 bytes"),
    "old format": (lambda p, t, m: craft(p, manifest={**MANIFEST, "format": "hive-agent-export/1"}),
                   "raw .git directories"),
    "bad bundle": (lambda p, t, m: craft(p, (info("repos/config.bundle"), b"# v2 git bundle\nnonsense\n")),
                   "config.bundle is unusable"),
    "bad head": (lambda p, t, m: craft(p, manifest={**MANIFEST, "repos": {"config": "ref: refs/../../x"}}),
                 "bad repo head"),
    "not gzip": (lambda p, t, m: (p.write_bytes(b"not a tar"), p)[1], "unreadable"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_archive_is_refused_and_changes_nothing(case: str, tmp_path: Path) -> None:
    make, reason = CASES[case]
    layout = Layout(tmp_path / "home")
    layout.home.mkdir()
    layout.make_agent_dirs("mallory")
    (layout.state("mallory") / "notes.md").write_text("mine\n")
    marker = tmp_path / "MARKER"
    path = make(tmp_path / "crafted.tar.gz", tmp_path, marker)
    before = snapshot(tmp_path / "home")
    with pytest.raises(HiveError) as err:
        archive.stage(layout, path, max_bytes=4096, max_members=10)
    assert err.value.code == "bad_request" and reason in err.value.message, err.value.message
    assert snapshot(tmp_path / "home") == before
    assert not (tmp_path / "escape").exists() and not marker.exists()


def test_export_never_follows_an_agents_symlinks(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "home")
    layout.home.mkdir()
    layout.make_agent_dirs("alice")
    repos.first_deploy(layout, "alice")
    secret_dir = tmp_path / "nats-creds"
    secret_dir.mkdir()
    (secret_dir / "sys.creds").write_text("SECRET\n")
    state, creds = layout.state("alice"), layout.creds("alice")
    (state / "x").symlink_to(secret_dir / "sys.creds")
    (state / "d").symlink_to(secret_dir)
    (creds / "y").symlink_to(secret_dir / "sys.creds")
    (layout.config("alice") / "z").symlink_to(secret_dir / "sys.creds")
    os.mkfifo(state / "pipe")
    (state / "real.md").write_text("real\n")
    out = tmp_path / "a.tar.gz"
    archive.export_agent(layout, "alice", {}, out, include_creds=True)
    with tarfile.open(out) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        blob = b"".join(tar.extractfile(m).read() for m in members if m.isfile())  # type: ignore[union-attr]
    assert names[0] == "manifest.json" and "state/real.md" in names and "repos/config.bundle" in names
    assert all(m.isfile() or m.isdir() for m in members)
    assert not any(".git" in n.split("/") for n in names)
    assert b"SECRET" not in blob
    assert sorted(manifest["skipped"]["state"]) == ["d", "pipe", "x"]
    assert manifest["skipped"]["creds"] == ["y"] and manifest["skipped"]["config"] == ["z"]


@pytest.mark.slow
async def test_refused_forced_import_keeps_the_existing_agent(make_deployer, tmp_path: Path) -> None:
    env = await make_deployer()
    await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="alice"))
    (env.home / "agents/alice/state/notes.md").write_text("keep\n")
    good = tmp_path / "alice.tar.gz"
    await env.call(ops.DEPLOYER_EXPORT, ExportRequest(name="alice", path=str(good)))
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(good) as src, tarfile.open(bad, "w:gz") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        dst.addfile(info("state/evil", type=tarfile.SYMTYPE, linkname="/etc/passwd"))
    before = snapshot(env.home / "agents") | snapshot(env.home / "applied")
    with pytest.raises(HiveError) as err:
        await env.call(ops.DEPLOYER_IMPORT, ImportRequest(path=str(bad), force=True))
    assert err.value.code == "bad_request" and "symlink" in err.value.message
    assert snapshot(env.home / "agents") | snapshot(env.home / "applied") == before
    assert not [p for p in env.home.iterdir() if p.name.startswith(".hive-import-")]
    again = await env.call(ops.DEPLOYER_IMPORT, ImportRequest(path=str(good), name="alice2"))
    assert again.name == "alice2" and (env.home / "agents/alice2/state/notes.md").read_text() == "keep\n"
