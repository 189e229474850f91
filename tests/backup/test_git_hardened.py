"""Issue 21: backup's git never runs code from a repo an agent can write (real git, poisoned repo)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hive_backup import archive
from tests.support import evilgit

ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, "GIT_AUTHOR_NAME": "a",
       "GIT_AUTHOR_EMAIL": "a@hive", "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@hive"}


class git:  # plain git for the test's own (not yet poisoned) repos
    @staticmethod
    def run(repo: Path, *args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], env=ENV, check=True, capture_output=True,
                              text=True).stdout.strip()

    @staticmethod
    def init(repo: Path) -> None:
        repo.mkdir(parents=True, exist_ok=True)
        git.run(repo, "init", "-q")

    @staticmethod
    def commit_all(repo: Path, msg: str, allow_empty: bool = False) -> str:
        git.run(repo, "add", "-A")
        git.run(repo, "commit", "-qm", msg, *(["--allow-empty"] if allow_empty else []))
        return git.head(repo)

    @staticmethod
    def head(repo: Path) -> str:
        return git.run(repo, "rev-parse", "HEAD")


def test_bundle_restore_and_check_run_nothing_of_a_poisoned_repo(tmp_path: Path) -> None:
    repo = tmp_path / "agents/alice/config"
    repo.mkdir(parents=True)
    git.init(repo)
    (repo / "agent.nix").write_text("{ }\n")
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
    sha = git.commit_all(repo, "one")
    marker = tmp_path / "MARKER"
    evilgit.poison(repo, marker)
    assert evilgit.plain_git_runs_it(repo, marker)

    bundle = tmp_path / "config.bundle"
    archive.git_bundle(repo, bundle)
    assert archive.git_check(bundle, tmp_path / "scratch") == []
    archive.git_restore(bundle, tmp_path / "restored")
    assert not marker.exists(), marker.read_text()
    assert git.head(tmp_path / "restored") == sha
    assert (tmp_path / "restored/agent.nix").read_text() == "{ }\n"
    assert "evil" not in (tmp_path / "restored/.git/config").read_text()


def test_a_symlinked_git_dir_is_not_bundled(tmp_path: Path) -> None:
    real = tmp_path / "real"
    git.init(real)
    git.commit_all(real, "x", allow_empty=True)
    repo = tmp_path / "cfg"
    repo.mkdir()
    (repo / ".git").symlink_to(real / ".git")
    with pytest.raises(RuntimeError, match="symlink"):
        archive.git_bundle(repo, tmp_path / "b.bundle")
    assert not (tmp_path / "b.bundle").exists()
