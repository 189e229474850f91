"""Helpers shared by the benchmarks that bench/run.py drives.

Every benchmark prints human-readable lines and, last, one machine-readable
line `BENCH_JSON {...}` with its rows: `{"rows": [{"name", "ratio", "baseline",
"better", "figures"}]}`. All load goes to loopback only and is bounded in count
and time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLAUDE = ROOT / ".tools/node_modules/.bin/claude"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def row(name: str, ratio: float | None, baseline: str, better: str, **figures: Any) -> dict[str, Any]:
    """One table row: `ratio` is ours/baseline; `better` says which way is good ("higher"/"lower")."""
    return {"name": name, "ratio": ratio, "baseline": baseline, "better": better, "figures": figures}


def emit(rows: list[dict[str, Any]], **extra: Any) -> None:
    print("BENCH_JSON " + json.dumps({"rows": rows, **extra}), flush=True)


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child in its own process group (so we stop exactly what we started)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        return subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def service_env(home: Path, nats_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HIVE_HOME": str(home), "HIVE_NATS_URL": nats_url, "HIVE_METRICS_ADDR": "127.0.0.1:0",
           "HIVE_LOG_LEVEL": "warning"}
    env.update(extra)
    return env


def python_m(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_user_sys(pid: int) -> tuple[float, float]:
    """(utime, stime) seconds of one process, from /proc; (0, 0) once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc."""
    return sum(cpu_user_sys(pid))


async def paced(rate: float, seconds: float, one: Callable[[int], Awaitable[None]]) -> int:
    """Start `one(i)` at `rate` per second for `seconds` (open loop), await them all; returns how many.

    The measuring process's own cyclic GC is paused meanwhile (after one full pass),
    so its pauses do not count against the service measured: after a million-send
    flood this client's gen-2 passes took 23-55 ms, one of which alone put the
    broker's p99 send-to-wake at 1,000 msg/s above 5 ms (the broker's loop had no
    stall then). Reference counting still frees everything acyclic."""
    gc.collect()
    gc.disable()
    try:
        return await _paced(rate, seconds, one)
    finally:
        gc.enable()


async def _paced(rate: float, seconds: float, one: Callable[[int], Awaitable[None]]) -> int:
    tasks = []
    t_start = time.perf_counter()
    i = 0
    while time.perf_counter() - t_start < seconds:
        delay = t_start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
        i += 1
    await asyncio.gather(*tasks)
    return i
