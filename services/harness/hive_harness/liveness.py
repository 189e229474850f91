"""Working, stalled or waiting: liveness of an agent CLI turn by progress, not by time.

Progress is any stream-json line from the CLI (with `--include-partial-messages`
the model's answer arrives as it streams), or work by the CLI's process tree:
CPU time or I/O bytes of the sandbox's processes, read from the host's `/proc`
(the started process, bwrap under confinement, and all its descendants). A
silent but busy tool (a build, a test run) is progress; a model stream that
stopped mid-answer is not. An idle CLI still spends a little (timers, about one
clock tick and ~50 bytes a second), so the tree counts only above
`HIVE_STALL_MIN_CPU` (a fraction of one core, default 0.1) or
`HIVE_STALL_MIN_IO` (bytes a second, default 16384).

No progress for `HIVE_STALL_S` (600) ⇒ stalled; none for `HIVE_STALL_KILL_S`
(twice HIVE_STALL_S) ⇒ the turn is cancelled (the loop retries its message).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hivewire import config

PROC = Path("/proc")
TICK_S = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


@dataclass
class StallConfig:
    stall_s: float = 600.0
    kill_s: float = 1200.0
    min_cpu: float = 0.1  # cores
    min_io: float = 16384.0  # bytes per second

    @classmethod
    def from_env(cls) -> StallConfig:
        stall = config.STALL_S.get()
        return cls(stall, config.STALL_KILL_S.get() or 2 * stall, config.STALL_MIN_CPU.get(),
                   config.STALL_MIN_IO.get())

    @property
    def check_s(self) -> float:
        return max(0.2, min(5.0, self.stall_s / 4))


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (via /proc/<pid>/task/*/children)."""
    out, todo, seen = [], [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        out.append(p)
        try:
            tasks = os.listdir(PROC / str(p) / "task")
        except OSError:
            continue
        for t in tasks:
            try:
                todo += [int(c) for c in (PROC / str(p) / "task" / t / "children").read_text().split()]
            except (OSError, ValueError):
                continue
    return out


def tree_usage(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, I/O bytes, processes) of `pid`'s tree, as far as /proc lets us read it."""
    cpu, io, n = 0, 0, 0
    for p in descendants(pid):
        try:
            fields = (PROC / str(p) / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        n += 1
        cpu += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        try:
            for line in (PROC / str(p) / "io").read_text().splitlines():
                k, _, v = line.partition(":")
                if k in ("rchar", "wchar"):
                    io += int(v)
        except (OSError, ValueError):
            pass
    return cpu * TICK_S, io, n


class Progress:
    """Tracks the last time a turn made progress; `check()` samples the process tree."""

    def __init__(self, cfg: StallConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.last = clock()
        self._sample: tuple[float, float, int, int] | None = None  # (t, cpu, io, n)
        self.lines = 0

    def line(self) -> None:
        self.lines += 1
        self.last = self.clock()

    def check(self, pid: int | None) -> float:
        """Sample `pid`'s tree; the seconds since the last progress."""
        now = self.clock()
        if pid is not None:
            cpu, io, n = tree_usage(pid)
            prev, self._sample = self._sample, (now, cpu, io, n)
            if prev is not None and now > prev[0]:
                dt = now - prev[0]
                if cpu - prev[1] >= self.cfg.min_cpu * dt or io - prev[2] >= self.cfg.min_io * dt or n > prev[3]:
                    self.last = now
        return now - self.last


OnState = Callable[[str, float], Awaitable[None]]


async def watch(progress: Progress, pid: Callable[[], int | None], on_state: OnState) -> None:
    """Until cancelled: `on_state("stalled" | "working" | "kill", idle_s)` when the turn's state changes."""
    cfg, stalled, killed = progress.cfg, False, False
    while True:
        await asyncio.sleep(cfg.check_s)
        idle = progress.check(pid())
        if idle >= cfg.kill_s and not killed:
            killed = True
            await on_state("kill", idle)
        elif idle >= cfg.stall_s and not stalled:
            stalled = True
            await on_state("stalled", idle)
        elif idle < cfg.stall_s and stalled:
            stalled = killed = False
            await on_state("working", idle)
