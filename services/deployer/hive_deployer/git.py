"""A tiny synchronous git wrapper (real git, no library): callers run it off the event loop."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hivewire.errors import HiveError

_ENV = {
    "GIT_AUTHOR_NAME": "hive-deployer",
    "GIT_AUTHOR_EMAIL": "deployer@hive.local",
    "GIT_COMMITTER_NAME": "hive-deployer",
    "GIT_COMMITTER_EMAIL": "deployer@hive.local",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


class GitError(HiveError):
    def __init__(self, message: str) -> None:
        super().__init__("internal", message)


def git(repo: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, **_ENV, "HOME": str(repo)}
    env.pop("GIT_DIR", None)
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "tag.gpgSign=false", "-c", "commit.gpgSign=false",
         "-c", "safe.directory=*", *args],
        cwd=repo, env=env, capture_output=True, text=True, check=False,
    )
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:2])} in {repo.name}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def init(repo: Path) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        git(repo, "init", "-q")


def is_repo(repo: Path) -> bool:
    return (repo / ".git").exists()


def head(repo: Path) -> str | None:
    out = git(repo, "rev-parse", "--verify", "-q", "HEAD", check=False)
    return out or None


def commit_all(repo: Path, message: str, *, allow_empty: bool = False) -> str:
    git(repo, "add", "-A")
    args = ["commit", "-q", "-m", message]
    if allow_empty:
        args.append("--allow-empty")
    if not allow_empty and not git(repo, "status", "--porcelain"):
        h = head(repo)
        if h:
            return h
        args.append("--allow-empty")
    git(repo, *args)
    return head(repo) or ""


def tag(repo: Path, name: str, ref: str = "HEAD", message: str | None = None) -> None:
    if message is None:
        git(repo, "tag", "-f", name, ref)
    else:
        git(repo, "tag", "-f", "-a", name, "-m", message, ref)


def tags(repo: Path, pattern: str = "*") -> list[str]:
    out = git(repo, "tag", "-l", pattern)
    return [t for t in out.splitlines() if t]


def tag_message(repo: Path, name: str) -> str:
    return git(repo, "tag", "-l", "--format=%(contents)", name).strip()


def rev(repo: Path, ref: str) -> str | None:
    out = git(repo, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)
    return out or None


def log_subjects(repo: Path, n: int = 20) -> list[str]:
    if head(repo) is None:
        return []
    return git(repo, "log", f"-{n}", "--format=%s").splitlines()
