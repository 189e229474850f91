"""Where the agent CLI runs: a bubblewrap sandbox, or (only when asked for) nothing.

The harness itself is trusted and stays outside: it holds the agent's NATS
identity and serves the agent's hive tools over a unix socket. Everything the
agent CLI runs (the CLI, its Bash tool, whatever those start) runs inside a
sandbox that has

- its own user (no capabilities, no further user namespaces), pid, ipc, uts,
  cgroup and network namespaces, a new session, and dies with the harness;
- a minimal filesystem: read-only system dirs, a curated `/etc`, the agent CLI's
  install; private tmpfs `$HOME`, `/tmp`, `/run`; the agent's own `state/` and
  `creds/` writable, the harness's files in `state/` read-only; nothing else of
  `HIVE_HOME` and nothing of the operator's home;
- no network but its own loopback: the sandbox init (`sandbox_init.js`) relays
  `127.0.0.1:INNER_PROXY_PORT` (the CLI's `HTTP(S)_PROXY`) to the harness's
  egress proxy, which lets through only the model API and operator-listed hosts;
- the environment of `inner_env` (an allowlist), never the harness's own.

`HIVE_SANDBOX` picks the kind: `bwrap` (default) or `none`, which needs
`HIVE_ALLOW_UNCONFINED=1` as well: a sandbox that cannot confine fails closed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from hivewire import config
from hivewire.agentenv import INNER_PASS, config_env_allowed, filter_config_env
from hivewire.confine import FIX_BWRAP, bwrap_error
from hivewire.errors import HiveError

__all__ = ["INNER_PASS", "Bwrap", "Sandbox", "Spec", "config_env_allowed", "filter_config_env", "from_env"]

INNER_RUN = Path("/run/hive")  # the harness's runtime dir, as the sandbox sees it (read-only)
INNER_HOME = "/home/agent"
INNER_UID = 1000
INNER_PROXY_PORT = 58080
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
# What of /etc a coding agent needs (TLS roots, name service, time zone, the dynamic loader,
# shell start-up); never the whole of it (shadow, ssh host keys, other services' configs).
ETC_ALLOW = ("ssl", "ca-certificates", "ca-certificates.conf", "alternatives", "resolv.conf", "nsswitch.conf",
             "host.conf", "gai.conf", "localtime", "timezone", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
             "mime.types", "os-release", "debian_version", "bash.bashrc", "profile", "profile.d", "inputrc",
             "terminfo", "protocols", "services", "gitconfig", "npmrc", "environment", "login.defs", "magic")
# Harness files kept in the agent's state dir: visible to the agent, never writable by it.
PROTECTED_SUFFIXES = ("", "-wal", "-shm")
PROTECTED_DBS = ("events.sqlite", "turn-stats.sqlite")
PROTECTED_FILES = ("metrics.json", "model")

# --- the sandbox --------------------------------------------------------------------
@dataclass
class Spec:
    """What one agent's sandbox holds."""

    agent: str
    state_dir: Path
    creds_dir: Path
    run_dir: Path  # the harness's runtime dir (sockets, relays, passwd): bound read-only at INNER_RUN
    agent_argv: list[str]
    ro_paths: list[Path] = field(default_factory=list)  # extra read-only paths (HIVE_SANDBOX_RO_PATHS)
    hidden: list[Path] = field(default_factory=list)  # emptied if a system dir would show them (HIVE_HOME)
    writable: list[Path] = field(default_factory=list)  # more dirs it may write (a session's output dir)


class Sandbox:
    """No confinement (`HIVE_SANDBOX=none` with `HIVE_ALLOW_UNCONFINED=1`)."""

    kind = "none"
    confined = False

    def inner(self, spec: Spec, path: Path) -> Path:
        """`path` (under spec.run_dir) as the inner command sees it."""
        return path

    def wrap(self, spec: Spec, argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
        return argv

    def proxy_env(self) -> dict[str, str]:
        return {}


class Bwrap(Sandbox):
    kind = "bwrap"
    confined = True

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def inner(self, spec: Spec, path: Path) -> Path:
        return INNER_RUN / path.relative_to(spec.run_dir)

    def proxy_env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{INNER_PROXY_PORT}"
        return {"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url}

    def wrap(self, spec: Spec, argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
        a = [self.binary, "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
             "--uid", str(INNER_UID), "--gid", str(INNER_UID), "--new-session", "--die-with-parent",
             "--hostname", f"hive-{spec.agent}", "--clearenv"]
        for d in SYSTEM_DIRS:
            p = Path(d)
            if p.is_symlink():
                a += ["--symlink", os.readlink(p), d]
            elif p.is_dir():
                a += ["--ro-bind", d, d]
        for name in ETC_ALLOW:
            if (Path("/etc") / name).exists():
                a += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        for f in ("passwd", "group", "hosts"):
            a += ["--ro-bind", str(spec.run_dir / f), f"/etc/{f}"]
        a += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/run",
              "--tmpfs", "/home", "--dir", INNER_HOME, "--tmpfs", "/root"]
        for h in spec.hidden:
            if any(h.is_relative_to(d) for d in SYSTEM_DIRS):
                a += ["--tmpfs", str(h)]
        for p in _outermost({*spec.ro_paths, *install_dirs(spec.agent_argv)}):
            if _bindable(p, spec):
                a += ["--ro-bind", str(p), str(p)]
        a += ["--ro-bind", str(spec.run_dir), str(INNER_RUN)]
        for d in (spec.state_dir, spec.creds_dir, *spec.writable):
            a += ["--bind", str(d), str(d)]
        for f in protected_files(spec.state_dir):
            a += ["--ro-bind", str(f), str(f)]
        a += ["--remount-ro", "/"]  # the sandbox's own root (where /etc, /home are made) is read-only too
        for k, v in sorted(env.items()):
            a += ["--setenv", k, v]
        node = node_binary()
        return [*a, "--chdir", str(cwd), "--", node, str(INNER_RUN / "sandbox_init.js"),
                str(INNER_PROXY_PORT), str(INNER_RUN / "egress.sock"), *argv]


def protected_files(state_dir: Path) -> list[Path]:
    names = [db + s for db in PROTECTED_DBS for s in PROTECTED_SUFFIXES] + list(PROTECTED_FILES)
    return [state_dir / n for n in names if (state_dir / n).is_file() and not (state_dir / n).is_symlink()]


def install_dirs(argv: list[str]) -> list[Path]:
    """The agent command's install: its resolved binary's dir (an npm package's root when that dir is its
    `bin`), the prefix of a script's interpreter (its shebang), and node's (the relays)."""
    if not argv:
        return []
    real = Path(shutil.which(argv[0]) or argv[0]).resolve()
    out = [_package_root(real)]
    interp = _shebang(real)
    if interp is not None:
        out.append(_prefix(Path(shutil.which(interp) or interp).resolve()))
    out.append(_prefix(Path(node_binary()).resolve()))
    return out


def _package_root(exe: Path) -> Path:
    d = exe.parent
    return d.parent if d.name == "bin" and (d.parent / "package.json").is_file() else d


def _prefix(exe: Path) -> Path:
    d = exe.parent
    return d.parent if d.name == "bin" and (d.parent / "lib").is_dir() else d


def _bindable(p: Path, spec: Spec) -> bool:
    """Never a dir that holds what the sandbox must not see (HIVE_HOME, the operator's home)."""
    if not p.exists() or any(p.is_relative_to(d) for d in SYSTEM_DIRS if Path(d).is_dir()):
        return False
    secret = [*spec.hidden, Path.home()]
    return not any(h.resolve().is_relative_to(p) for h in secret if h.exists())


def resolved_argv(argv: list[str]) -> list[str]:
    """argv with its binary resolved on the host (inside, only its resolved install exists)."""
    exe = shutil.which(argv[0]) or argv[0]
    return [str(Path(exe).resolve()), *argv[1:]]


def _shebang(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    parts = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
    if not parts:
        return None
    if parts[0].endswith("/env") and len(parts) > 1:
        return parts[1]
    return parts[0]


def _outermost(paths: set[Path]) -> list[Path]:
    ps = sorted({p.resolve() for p in paths if str(p) not in ("", "/")})
    return [p for p in ps if not any(p != q and p.is_relative_to(q) for q in ps)]


def node_binary() -> str:
    return shutil.which("node") or "/usr/bin/node"


def write_run_files(run_dir: Path, agent: str) -> None:
    """The runtime dir's static files: relays, passwd/group/hosts for the inner user."""
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pkg = resources.files("hive_harness")
    for js in ("sandbox_init.js", "mcp_relay.js"):
        (run_dir / js).write_text(pkg.joinpath(js).read_text())
    (run_dir / "passwd").write_text(f"agent:x:{INNER_UID}:{INNER_UID}:hive agent {agent}:{INNER_HOME}:/bin/bash\n"
                                    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    (run_dir / "group").write_text(f"agent:x:{INNER_UID}:\nnogroup:x:65534:\n")
    (run_dir / "hosts").write_text(f"127.0.0.1 localhost hive-{agent}\n::1 localhost ip6-localhost\n")


# --- choosing one ------------------------------------------------------------------
_checked: dict[str, str | None] = {}


def from_env(env: Mapping[str, str] | None = None, check: Callable[[str | None], str | None] = bwrap_error) -> Sandbox:
    """The sandbox `HIVE_SANDBOX` asks for; a HiveError naming the fix when it cannot confine."""
    kind = config.SANDBOX.get(env)
    if kind == "none":
        if config.ALLOW_UNCONFINED.get(env) != "1":
            raise HiveError("forbidden", "HIVE_SANDBOX=none runs the agent unconfined: set HIVE_ALLOW_UNCONFINED=1 "
                                         "as well if that is really meant")
        return Sandbox()
    binary = config.BWRAP.get(env) or shutil.which("bwrap")
    key = binary or ""
    if key not in _checked:
        _checked[key] = check(binary)
    if _checked[key] is not None:
        raise HiveError("unavailable", f"{_checked[key]}; to fix: {FIX_BWRAP}")
    assert binary is not None
    return Bwrap(binary)
