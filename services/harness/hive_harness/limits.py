"""Process and memory limits for an agent's sandbox: a cgroup per agent, plus rlimits.

A fork bomb or a runaway build inside the sandbox must not take the host
down. The sandbox's first process joins the agent's cgroup before it execs
bubblewrap, so everything the agent starts is counted there:

- cgroup v2 (`/sys/fs/cgroup/cgroup.controllers`): `pids.max`, `memory.max`
  under `HIVE_SANDBOX_CGROUP` (default: the unified root; under systemd give the
  service `Delegate=yes` and point this at its delegated subtree);
- cgroup v1: the `pids` and `memory` hierarchies (`pids.max`, `memory.limit_in_bytes`).

`RLIMIT_NPROC` is set too; it binds only when Hive does not run as root (the
kernel exempts uid 0), which is why the cgroup matters. Where no cgroup can be
made the harness logs `sandbox_limits_unavailable` and counts it.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from hive_harness import metrics
from hivewire import config
from hivewire.procs import die_with_parent

log = structlog.get_logger("hive_harness.limits")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class Limits:
    pids_max: int | None = 1024
    memory_max: int | None = 4 << 30
    cgroup_parent: Path | None = None
    procs_files: list[Path] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> Limits:
        parent = config.SANDBOX_CGROUP.get()
        return cls(config.SANDBOX_PIDS_MAX.get(), config.SANDBOX_MEMORY_MAX.get(), Path(parent) if parent else None)

    def setup(self, agent: str, tag: str = "") -> bool:
        """Make the cgroup of this harness's agent with the limits; False when none could be made.
        `tag` (the harness instance) keeps two hives' agents of the same name apart."""
        name = f"hive-sandbox-{agent}" + (f"-{tag}" if tag else "")
        try:
            if (CGROUP_ROOT / "cgroup.controllers").exists():
                self.procs_files = [self._v2(name)]
            else:
                self.procs_files = self._v1(name)
        except OSError as exc:
            self.procs_files = []
            metrics.FAILURES.labels("sandbox_limits").inc()
            log.warning("sandbox_limits_unavailable", agent=agent, error=str(exc),
                        fix="run the harness where it may make cgroups (root, or a delegated cgroup v2 "
                            "subtree via HIVE_SANDBOX_CGROUP)")
        return bool(self.procs_files)

    def _v2(self, name: str) -> Path:
        parent = self.cgroup_parent or CGROUP_ROOT
        try:
            (parent / "cgroup.subtree_control").write_text("+pids +memory")
        except OSError:
            pass  # already enabled, or the parent is not ours to change: the writes below say which
        cg = parent / name
        cg.mkdir(exist_ok=True)
        (cg / "pids.max").write_text(str(self.pids_max) if self.pids_max else "max")
        (cg / "memory.max").write_text(str(self.memory_max) if self.memory_max else "max")
        with contextlib.suppress(OSError):  # no swap accounting on this host
            (cg / "memory.swap.max").write_text("0")
        return cg / "cgroup.procs"

    def _v1(self, name: str) -> list[Path]:
        out = []
        for ctrl, knob, value in (("pids", "pids.max", str(self.pids_max) if self.pids_max else "max"),
                                  ("memory", "memory.limit_in_bytes", str(self.memory_max or -1))):
            root = self.cgroup_parent / ctrl if self.cgroup_parent else CGROUP_ROOT / ctrl
            if not root.is_dir():
                raise OSError(f"no cgroup v1 {ctrl} hierarchy at {root}")
            cg = root / "hive-sandbox" / name
            cg.mkdir(parents=True, exist_ok=True)
            (cg / knob).write_text(value)
            out.append(cg / "cgroup.procs")
        return out

    def teardown(self) -> None:
        """Remove the cgroup(s) once the sandbox's processes are gone (an rmdir of a busy one fails)."""
        for procs in self.procs_files:
            with contextlib.suppress(OSError):
                procs.parent.rmdir()
        self.procs_files = []

    def preexec(self) -> Callable[[], None]:
        """preexec_fn for the sandbox's first process: join the cgroup, set rlimits, die with the harness."""
        files = list(self.procs_files)
        nproc = self.pids_max

        def run() -> None:
            die_with_parent()
            for f in files:
                with open(f, "w") as fh:
                    fh.write(str(os.getpid()))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if nproc and os.getuid() != 0:
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

        return run

