"""Where an agent's harness runs, behind one small interface.

A runtime turns a `Launch` (argv, env, the dirs the agent may write) into
the commands that run it:

- `process`: a plain child process (no isolation);
- `bwrap`: bubblewrap with its own mount, pid, ipc and uts namespaces; the
  whole host is read-only except the agent's state (and creds) dirs; the
  default where `/usr/bin/bwrap` works;
- `podman` / `docker`: `run --rm` in the foreground, so the client process is
  supervised like any child (command level only: this host cannot run them);
- `nixos-container`: `nixos-container update --flake meta#<name>` then start,
  stop and a foreground `run` (command level only, same reason).

`prepare()` commands run to completion before the foreground `argv()`; the
deployer supervises the foreground process (exit = crash unless stopped on
purpose) and the agent's presence heartbeat.

NATS identity: a child never inherits the deployer's own (`env()` drops
`HIVE_NATS_CREDS`/`_USER`/`_PASSWORD`/`_INBOX_PREFIX` of the deployer's
environment); it gets only what its `Launch.env` names. `Launch.hidden`
dirs (HIVE_HOME/nats: every user's credentials) are replaced by an empty
tmpfs under bwrap, and `Launch.readonly` files (the agent's own credentials
file) are bound back read-only, so an agent sees its own credentials and no
one else's. The `process` runtime cannot hide anything (same uid, same
filesystem).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hivewire.natsauth import IDENTITY_ENV

RUNTIMES = ("process", "bwrap", "podman", "docker", "nixos-container")


@dataclass
class Launch:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    writable: list[Path] = field(default_factory=list)
    meta: Path | None = None
    hidden: list[Path] = field(default_factory=list)  # not visible inside a sandbox (secrets of others)
    readonly: list[Path] = field(default_factory=list)  # visible (read-only) even under a hidden dir


class Runtime:
    kind = "process"
    note = "plain child process, no isolation"
    tested_here = True

    def prepare(self, launch: Launch) -> list[list[str]]:
        return []

    def argv(self, launch: Launch) -> list[str]:
        return list(launch.argv)

    def stop_commands(self, launch: Launch) -> list[list[str]]:
        return []

    def env(self, launch: Launch) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if k not in IDENTITY_ENV}
        return {**inherited, **launch.env}


class ProcessRuntime(Runtime):
    pass


class BwrapRuntime(Runtime):
    kind = "bwrap"
    note = ("bubblewrap: own mount+pid+ipc+uts namespaces, host read-only, HIVE_HOME hidden except the agent's "
            "own state and creds dirs")

    def __init__(self, binary: str = "bwrap") -> None:
        self.binary = binary

    def argv(self, launch: Launch) -> list[str]:
        args = [
            self.binary,
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", f"hive-{launch.name}",
            "--die-with-parent",
        ]
        # The private /tmp would hide a Python or a checkout that lives under
        # /tmp (a CI clone, a test venv): bring those back, read-only.
        for d in _host_paths_under_tmp(launch):
            args += ["--ro-bind", str(d), str(d)]
        # Hidden dirs (HIVE_HOME) become empty first; the agent's own dirs are then
        # bound back on top, so nothing else of the hive is visible inside.
        for d in launch.hidden:
            if d.is_dir():
                args += ["--tmpfs", str(d)]
        for d in launch.writable:
            args += ["--bind", str(d), str(d)]
        for f in launch.readonly:
            if f.exists():
                args += ["--ro-bind", str(f), str(f)]
        args += ["--setenv", "TMPDIR", "/tmp", "--chdir", str(launch.cwd), "--", *launch.argv]
        return args


def _host_paths_under_tmp(launch: Launch) -> list[Path]:
    """Interpreter, installed code and the agent binary's dirs that sit under /tmp."""
    import hivewire

    cands = {Path(sys.prefix), Path(sys.base_prefix), Path(hivewire.__file__).resolve().parents[3]}
    for mod in ("hive_harness", "hive_deployer"):
        spec = importlib.util.find_spec(mod)
        if spec is not None and spec.origin:
            cands.add(Path(spec.origin).resolve().parents[2])
    if launch.argv:
        exe = shutil.which(launch.argv[0]) or launch.argv[0]
        cands.add(Path(exe).resolve().parent)
    for key in ("HIVE_AGENT_CMD",):
        cmd = launch.env.get(key) or os.environ.get(key)
        if cmd:
            cands.add(Path(shutil.which(cmd) or cmd).resolve().parent)
    tmp = Path("/tmp")
    under = sorted({c.resolve() for c in cands if c.resolve().is_relative_to(tmp) and c.resolve() != tmp})
    # keep only outermost dirs so binds do not shadow each other
    return [p for p in under if not any(p != q and p.is_relative_to(q) for q in under)]


class PodmanRuntime(Runtime):
    kind = "podman"
    note = "command level only: podman/docker cannot run on this host"
    tested_here = False

    def __init__(self, binary: str = "podman", image: str = "localhost/hive:latest") -> None:
        self.binary = binary
        self.kind = "docker" if binary.endswith("docker") else "podman"
        self.image = image

    def container(self, launch: Launch) -> str:
        return f"hive-{launch.name}"

    def argv(self, launch: Launch) -> list[str]:
        args = [self.binary, "run", "--rm", "--name", self.container(launch), "--network", "host", "--init",
                "--read-only"]
        for d in launch.writable:
            args += ["-v", f"{d}:{d}:rw"]
        for f in launch.readonly:
            args += ["-v", f"{f}:{f}:ro"]
        for k, v in sorted(launch.env.items()):
            args += ["-e", f"{k}={v}"]
        args += ["-w", str(launch.cwd), self.image, *launch.argv]
        return args

    def stop_commands(self, launch: Launch) -> list[list[str]]:
        return [[self.binary, "stop", "-t", "8", self.container(launch)]]


class NixosContainerRuntime(Runtime):
    kind = "nixos-container"
    note = "command level only: nixos-container needs NixOS + systemd-nspawn, not available here"
    tested_here = False

    def container(self, launch: Launch) -> str:
        return f"hive-{launch.name}"[:11]  # nixos-container names are limited to 11 chars

    def prepare(self, launch: Launch) -> list[list[str]]:
        meta = launch.meta or Path("/var/lib/hive/meta")
        c = self.container(launch)
        return [
            ["nixos-container", "update", c, "--flake", f"{meta}#{launch.name}"],
            ["nixos-container", "start", c],
        ]

    def argv(self, launch: Launch) -> list[str]:
        env = [f"{k}={v}" for k, v in sorted(launch.env.items())]
        return ["nixos-container", "run", self.container(launch), "--", "env", *env, *launch.argv]

    def stop_commands(self, launch: Launch) -> list[list[str]]:
        return [["nixos-container", "stop", self.container(launch)]]


def bwrap_works(binary: str | None = None) -> bool:
    path = binary or shutil.which("bwrap")
    if not path:
        return False
    try:
        proc = subprocess.run(
            [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "true"],
            capture_output=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def get_runtime(kind: str | None = None) -> Runtime:
    """`HIVE_DEPLOYER_RUNTIME` (or `kind`); default bwrap where it works, else process."""
    kind = kind or os.environ.get("HIVE_DEPLOYER_RUNTIME") or ("bwrap" if bwrap_works() else "process")
    if kind == "process":
        return ProcessRuntime()
    if kind == "bwrap":
        return BwrapRuntime(shutil.which("bwrap") or "bwrap")
    if kind in ("podman", "docker"):
        return PodmanRuntime(kind, os.environ.get("HIVE_DEPLOYER_IMAGE", "localhost/hive:latest"))
    if kind == "nixos-container":
        return NixosContainerRuntime()
    raise ValueError(f"unknown runtime {kind!r}; known: {', '.join(RUNTIMES)}")
