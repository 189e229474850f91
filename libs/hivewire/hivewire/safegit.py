"""Git that never runs code a repository controls (issue 21, "Confinement").

Agents write their config repos (`agents/<name>/config`), so such a repo's
`.git/config`, hooks, `.gitattributes` and refs are attacker input. Every
service that runs git builds the command here:

- `argv()`/`env()`: the hardened prefix. On the command line (which wins over
  any repo config): no fsmonitor, hooks from /dev/null, no attributes file, no
  pager/editor/askpass/ssh/gpg program, no credential helpers, an external
  diff that cannot run (fail closed), only the `file` transport (and only when
  asked), fsck on every object received, implicit bare repos refused. In the
  environment: no system or global config, no system attributes, no prompts,
  no replace refs, and every inherited `GIT_*` variable dropped. diff/show/log
  get `--no-textconv --no-ext-diff`.
- What the command line cannot override is a name the repo picks itself:
  `filter.<driver>.clean/smudge/process` (named by `.gitattributes`),
  `diff.<driver>.textconv/command`, `include.path`. So a repo an agent can
  write is never opened by git at all: `shadow()` is a throwaway bare repo of
  ours (our config, no hooks, no index) that borrows the agent repo's object
  store through `objects/info/alternates`, and `read_refs()` reads refs as
  plain files. Reading objects runs no code.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hivewire.errors import HiveError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
REF_RE = re.compile(r"^refs/(?:[A-Za-z0-9_+-][A-Za-z0-9._+-]*/)*[A-Za-z0-9_+-][A-Za-z0-9._+-]*$")
DIFF_COMMANDS = frozenset({"diff", "show", "log", "format-patch"})
DIFF_FLAGS = ("--no-textconv", "--no-ext-diff", "--no-color")
TIMEOUT_S = 600.0

# Config on the command line: it is read last, so it beats every file (repo config included).
HARDENED: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.attributesFile", "/dev/null"),
    ("core.pager", "cat"),
    ("core.editor", "false"),
    ("core.askPass", "false"),
    ("core.sshCommand", "false"),
    ("credential.helper", ""),  # an empty value clears the list of helpers
    ("diff.external", ""),  # fail closed: a diff without --no-ext-diff errors out instead of running it
    ("gpg.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("tag.forceSignAnnotated", "false"),
    ("log.showSignature", "false"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("transfer.fsckObjects", "true"),
    ("safe.bareRepository", "explicit"),
    ("protocol.allow", "never"),
    ("init.defaultBranch", "main"),
)
LOCAL_TRANSPORT = (("protocol.file.allow", "always"),)

ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "GIT_PAGER": "cat",
    "GIT_EDITOR": "false",
    "GIT_ASKPASS": "false",
    "GIT_SSH_COMMAND": "false",
}


class UnsafeRepo(HiveError):
    def __init__(self, message: str) -> None:
        super().__init__("bad_request", message)


def argv(*args: str, git_dir: Path | None = None, cwd: Path | None = None, local: bool = False,
         config: Sequence[tuple[str, str]] = ()) -> list[str]:
    """`git [--git-dir=..|-C ..] -c k=v... <command> [diff flags] <args>`.

    `local=True` allows the `file` transport (a path, a bundle, a shadow repo);
    nothing else is ever allowed.
    """
    out = ["git", "--no-pager"]
    if git_dir is not None:
        out.append(f"--git-dir={git_dir}")
    if cwd is not None:
        out += ["-C", str(cwd)]
    for k, v in (*HARDENED, *(LOCAL_TRANSPORT if local else ()), *config):
        out += ["-c", f"{k}={v}"]
    if args:
        out.append(args[0])
        if args[0] in DIFF_COMMANDS:
            out += DIFF_FLAGS
        out += args[1:]
    return out


def env(base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for git: `base` (default os.environ) without any GIT_* variable, plus ENV and `extra`."""
    src = os.environ if base is None else base
    out = {k: v for k, v in src.items() if not k.startswith("GIT_")}
    out.update(ENV)
    out.update(extra or {})
    return out


def run(*args: str, git_dir: Path | None = None, cwd: Path | None = None, local: bool = False,
        config: Sequence[tuple[str, str]] = (), extra_env: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT_S, text: bool = True) -> subprocess.CompletedProcess[Any]:
    """Run hardened git; never raises on a non-zero exit (look at returncode)."""
    e = env(extra=extra_env)
    if cwd is not None and git_dir is None:
        # look for the repo in cwd itself only, never in a parent directory
        e["GIT_CEILING_DIRECTORIES"] = str(Path(cwd).resolve().parent)
    return subprocess.run(argv(*args, git_dir=git_dir, cwd=cwd, local=local, config=config), env=e,
                          stdin=subprocess.DEVNULL, capture_output=True, text=text, timeout=timeout,
                          check=False)


# --- repos an agent can write: read as files, never opened by git ------------------------
def _real_dir(p: Path, what: str) -> None:
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        raise UnsafeRepo(f"{what} {p} does not exist") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRepo(f"{what} {p} is not a plain directory (a symlink or a gitfile is refused)")


def checked_git_dir(gd: Path) -> Path:
    """An agent-writable git dir, checked: plain directories (no symlink, no gitfile), no alternates."""
    gd = Path(gd)
    if "\n" in str(gd) or "\r" in str(gd):
        raise UnsafeRepo("repository path contains a newline")
    _real_dir(gd, "git dir")
    _real_dir(gd / "objects", "object store")
    if os.path.lexists(gd / "objects" / "info" / "alternates"):
        raise UnsafeRepo(f"{gd}/objects/info/alternates exists: borrowing objects from elsewhere is refused")
    return gd


def agent_git_dir(worktree: Path) -> Path:
    """`<worktree>/.git` of an agent-writable repo, checked (see `checked_git_dir`)."""
    return checked_git_dir(Path(worktree) / ".git")


def _read_small(p: Path, limit: int = 64 * 1024 * 1024) -> str | None:
    """A regular file's text, not following a symlink at the last component; None if not one."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def read_refs(git_dir: Path) -> tuple[dict[str, str], str | None]:
    """(refs -> sha, HEAD) of a git dir, parsed as files (packed-refs, then loose refs).

    HEAD is `ref: refs/...` or a sha, or None. Malformed names or values and
    symlinks are skipped: nothing here is trusted, nothing is run.
    """
    refs: dict[str, str] = {}
    packed = _read_small(git_dir / "packed-refs") or ""
    for line in packed.splitlines():
        if not line or line[0] in "#^":
            continue
        sha, _, name = line.partition(" ")
        if SHA1_RE.match(sha) and REF_RE.match(name) and ".." not in name and not name.endswith(".lock"):
            refs[name] = sha
    root = git_dir / "refs"
    if os.path.isdir(root) and not os.path.islink(root):
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
            for f in files:
                p = Path(dirpath) / f
                name = "refs/" + p.relative_to(root).as_posix()
                if not REF_RE.match(name) or ".." in name or name.endswith(".lock"):
                    continue
                val = (_read_small(p, 4096) or "").strip()
                if SHA1_RE.match(val):
                    refs[name] = val
    head_raw = (_read_small(git_dir / "HEAD", 4096) or "").strip()
    head: str | None = None
    if head_raw.startswith("ref: ") and REF_RE.match(head_raw[5:]) and ".." not in head_raw:
        head = head_raw
    elif SHA1_RE.match(head_raw):
        head = head_raw
    return refs, head


def head_sha(git_dir: Path) -> str | None:
    refs, head = read_refs(git_dir)
    if head is None:
        return None
    return refs.get(head[5:]) if head.startswith("ref: ") else head


@contextmanager
def shadow(*object_dirs: Path, refs: Mapping[str, str] | None = None, head: str | None = None,
           parent: Path | None = None) -> Iterator[Path]:
    """A throwaway bare repo of ours that sees the objects of `object_dirs` (alternates) and `refs`.

    Use it with `run(..., git_dir=shadow)`: git reads only our config, runs no
    hook, has no index or work tree, and cannot tell the borrowed repo exists.
    """
    tmp = Path(tempfile.mkdtemp(prefix="hive-git-shadow-", dir=parent))
    try:
        (tmp / "objects" / "info").mkdir(parents=True)
        (tmp / "refs" / "heads").mkdir(parents=True)
        (tmp / "refs" / "tags").mkdir()
        (tmp / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tbare = true\n")
        lines = []
        for d in object_dirs:
            s = str(Path(d).resolve())
            if "\n" in s or "\r" in s:
                raise UnsafeRepo("object directory path contains a newline")
            lines.append(s)
        (tmp / "objects" / "info" / "alternates").write_text("".join(f"{s}\n" for s in lines))
        packed = ["# pack-refs with: peeled"]
        for name, sha in sorted((refs or {}).items()):
            if not (REF_RE.match(name) and SHA1_RE.match(sha)) or ".." in name:
                raise UnsafeRepo(f"bad ref {name!r}")
            packed.append(f"{sha} {name}")
        (tmp / "packed-refs").write_text("\n".join(packed) + "\n")
        ok = head is not None and ((head.startswith("ref: ") and REF_RE.match(head[5:])) or SHA1_RE.match(head))
        (tmp / "HEAD").write_text(f"{head if ok else 'ref: refs/heads/main'}\n")
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bundle_create(git_dir: Path, dst: Path, *, parent: Path | None = None) -> bool:
    """Write every ref (and HEAD) of a possibly agent-written git dir to a bundle; False if it has no refs.

    The repo is never opened by git: its refs are read as files and the
    bundle is made in a shadow repo that borrows its objects.
    """
    gd = checked_git_dir(git_dir)
    refs, head = read_refs(gd)
    if not refs:
        return False
    if head is not None and head.startswith("ref: ") and head[5:] not in refs:
        head = None
    with shadow(gd / "objects", refs=refs, head=head, parent=parent) as sh:
        r = run("bundle", "create", "-q", str(dst), "--all", git_dir=sh)
        if r.returncode != 0:
            raise HiveError("internal", f"git bundle create failed: {r.stderr.strip()}")
    return True
