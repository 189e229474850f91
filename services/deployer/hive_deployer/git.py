"""A tiny synchronous git wrapper (real git, no library): callers run it off the event loop.

Every call goes through `hivewire.safegit` (no hooks, fsmonitor, textconv,
external diff, pager, gpg, system/global config; only the file transport).
`git()` is for the deployer's own repos (applied/<name>, meta, temp repos).
A repo an agent can write (agents/<name>/config) is never opened by git:
the `agent_*` functions read its refs as files and its objects through a
shadow repo (see safegit), so its .git/config, hooks and .gitattributes
never take effect.
"""

from __future__ import annotations

from pathlib import Path

from hivewire import safegit
from hivewire.errors import HiveError

_ENV = {
    "GIT_AUTHOR_NAME": "hive-deployer",
    "GIT_AUTHOR_EMAIL": "deployer@hive.local",
    "GIT_COMMITTER_NAME": "hive-deployer",
    "GIT_COMMITTER_EMAIL": "deployer@hive.local",
}


class GitError(HiveError):
    def __init__(self, message: str) -> None:
        super().__init__("internal", message)


def git(repo: Path, *args: str, check: bool = True, local: bool = False) -> str:
    """Hardened git in one of the deployer's own repos (`local`: may read a path/bundle/shadow repo)."""
    proc = safegit.run(*args, cwd=repo, local=local, extra_env=_ENV)
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


# --- repos an agent can write -------------------------------------------------------------
def agent_head(worktree: Path) -> str | None:
    """HEAD's sha of an agent-writable repo (refs read as files), None if it has none."""
    return safegit.head_sha(safegit.agent_git_dir(worktree))


def agent_rev(worktree: Path, ref: str) -> str | None:
    """The full sha of commit `ref` (hex, maybe abbreviated) in an agent-writable repo's objects."""
    gd = safegit.agent_git_dir(worktree)
    with safegit.shadow(gd / "objects") as sh:
        proc = safegit.run("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", git_dir=sh)
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and safegit.SHA1_RE.match(out) else None


def fetch_from_agent(repo: Path, worktree: Path, sha: str) -> None:
    """Copy commit `sha` (and its history) from an agent-writable repo into our `repo` (fsck'd on the way)."""
    gd = safegit.agent_git_dir(worktree)
    with safegit.shadow(gd / "objects", refs={"refs/hive/want": sha}) as sh:
        git(repo, "fetch", "-q", "--no-tags", "--no-write-fetch-head", str(sh), "refs/hive/want", local=True)


def restore_bundle(bundle: Path, dest: Path, head: str | None, *, checkout: bool) -> None:
    """A new repo in `dest` with every ref of `bundle`; HEAD set to `head` (a ref or a sha).

    `checkout`: reset the work tree to HEAD; else only the index is set to HEAD
    and files already in `dest` are the work tree.
    """
    init(dest)
    git(dest, "fetch", "-q", "--no-tags", "--update-head-ok", "--no-write-fetch-head", str(bundle), "+refs/*:refs/*",
        local=True)
    if head and head.startswith("ref: ") and safegit.REF_RE.match(head[5:]):
        git(dest, "symbolic-ref", "HEAD", head[5:])
    elif head and safegit.SHA1_RE.match(head):
        git(dest, "update-ref", "--no-deref", "HEAD", head)
    if head is None or rev(dest, "HEAD") is None:
        return
    if checkout:
        git(dest, "reset", "-q", "--hard", "HEAD")
    else:
        git(dest, "read-tree", "HEAD")
