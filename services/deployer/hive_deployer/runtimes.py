"""Where an agent's harness runs, behind one small interface.

A runtime turns a `Launch` (argv, env, the dirs the agent may write) into
the commands that run it:

- `bwrap` (the default): the harness, which is trusted, runs as a child
  process on the host, and runs every agent CLI turn in a bubblewrap sandbox
  (`hive_harness.sandbox`: own user, pid, network namespaces, a minimal
  filesystem, an egress allowlist, hive tools only through the harness's MCP
  socket). When bwrap cannot confine on this host, starting an agent fails
  with an error that names the fix: never a silent fallback.
- `process`: the same, but the agent CLI runs unconfined. Only with
  `HIVE_ALLOW_UNCONFINED=1` in the deployer's environment; such agents are
  listed as `unconfined`.
- `podman` / `docker`: `run --rm` in the foreground, so the client process is
  supervised like any child (command level only: this host cannot run them);
- `nixos-container`: `nixos-container update --flake meta#<name>` then start,
  stop and a foreground `run` (command level only, same reason).

`prepare()` commands run to completion before the foreground `argv()`; the
deployer supervises the foreground process (exit = crash unless stopped on
purpose) and the agent's presence heartbeat.

Environment: a harness gets `hivewire.agentenv.harness_env` of the
deployer's environment (an allowlist: never the operator token or the
deployer's own NATS identity) plus what its `Launch.env` names.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hivewire import agentenv, config
from hivewire.confine import FIX_BWRAP, bwrap_error

RUNTIMES = ("process", "bwrap", "podman", "docker", "nixos-container")
UNCONFINED_FIX = ("the process runtime runs agents unconfined; set HIVE_ALLOW_UNCONFINED=1 in the deployer's "
                  "environment if that is really meant, or use the bwrap runtime (the default)")


@dataclass
class Launch:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    writable: list[Path] = field(default_factory=list)
    meta: Path | None = None
    hidden: list[Path] = field(default_factory=list)  # not visible inside a container (secrets of others)
    readonly: list[Path] = field(default_factory=list)  # visible (read-only) even under a hidden dir


class Runtime:
    kind = "process"
    note = "plain child process; the agent CLI runs unconfined"
    tested_here = True
    confined = False

    def check(self) -> str | None:
        """Why this runtime cannot start an agent here (None when it can)."""
        return None

    def prepare(self, launch: Launch) -> list[list[str]]:
        return []

    def argv(self, launch: Launch) -> list[str]:
        return list(launch.argv)

    def stop_commands(self, launch: Launch) -> list[list[str]]:
        return []

    def sandbox_env(self) -> dict[str, str]:
        return {"HIVE_SANDBOX": "none", "HIVE_ALLOW_UNCONFINED": "1"}

    def oneoff_argv(self, launch: Launch, passed: list[str]) -> list[str]:
        """A one-off agent command (a session's CLI run), confined like an agent's turn."""
        return self.argv(launch)

    def env(self, launch: Launch) -> dict[str, str]:
        return {**agentenv.harness_env(), **launch.env, **self.sandbox_env()}


class ProcessRuntime(Runtime):
    def __init__(self, allow_unconfined: bool | None = None) -> None:
        self.allow = allow_unconfined

    def check(self) -> str | None:
        allowed = config.ALLOW_UNCONFINED.get() == "1" if self.allow is None else self.allow
        return None if allowed else UNCONFINED_FIX


class BwrapRuntime(Runtime):
    kind = "bwrap"
    confined = True
    note = ("harness on the host; each agent CLI turn in a bubblewrap sandbox: own user, pid, network namespaces, "
            "minimal filesystem, egress allowlist, hive tools only over the harness's MCP socket")

    def __init__(self, binary: str = "bwrap") -> None:
        self.binary = binary
        self._error: str | None = None
        self._checked = False

    def check(self) -> str | None:
        if not self._checked:
            self._error, self._checked = bwrap_error(self.binary), True
        return f"{self._error}; to fix: {FIX_BWRAP}" if self._error else None

    def sandbox_env(self) -> dict[str, str]:
        return {"HIVE_SANDBOX": "bwrap", "HIVE_BWRAP": self.binary}

    def oneoff_argv(self, launch: Launch, passed: list[str]) -> list[str]:
        args = [sys.executable, "-m", "hive_harness.confined", "--name", launch.name, "--workdir", str(launch.cwd)]
        for d in launch.writable:
            if d != launch.cwd:
                args += ["--writable", str(d)]
        for d in launch.hidden:
            args += ["--hidden", str(d)]
        for name in passed:
            args += ["--pass", name]
        return [*args, "--", *launch.argv]


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
    return bwrap_error(binary or shutil.which("bwrap")) is None


def get_runtime(kind: str | None = None) -> Runtime:
    """`HIVE_DEPLOYER_RUNTIME` (or `kind`); default bwrap, which fails closed where it cannot confine."""
    kind = kind or config.DEPLOYER_RUNTIME.get()
    if kind == "process":
        return ProcessRuntime()
    if kind == "bwrap":
        return BwrapRuntime(shutil.which("bwrap") or "bwrap")
    if kind in ("podman", "docker"):
        return PodmanRuntime(kind, config.DEPLOYER_IMAGE.get())
    if kind == "nixos-container":
        return NixosContainerRuntime()
    raise ValueError(f"unknown runtime {kind!r}; known: {', '.join(RUNTIMES)}")
