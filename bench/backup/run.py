"""Benchmark: online snapshot of a large live database vs `sqlite3 db ".backup"`.

A writer process commits one row per transaction (synchronous=FULL, WAL) the
whole time. We time hive-backup's copy (backup API in one step) and its full
pipeline (copy + row counts + gzip + sha256), then `sqlite3 db ".backup"` on
the same file under the same writer (with a timeout: a page-stepped backup is
restarted by every commit of another connection), then `.backup` with the
writer paused. The copies run in interleaved rounds (ours under the writer,
then, writer paused, `.backup` and ours idle) and the ratios use medians, so
the noise of a shared VM hits both sides alike. Prints the throughput ratio
and the writer's longest stall during each copy. Not a test: no assertions.

    python bench/backup/run.py --size-mb 1024
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hive_backup import archive
from hive_backup.config import parse_config
from hive_backup.discover import Item
from hive_backup.engine import Engine

WRITER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("PRAGMA journal_mode=WAL"); conn.execute("PRAGMA synchronous=FULL")
conn.execute("PRAGMA busy_timeout=30000")
out = open(sys.argv[2], "w", buffering=1)
payload = "w" * 200
while True:
    t0 = time.time()
    conn.execute("INSERT INTO blobs(data) VALUES (?)", (payload,))
    t1 = time.time()
    out.write(f"{t0:.6f} {t1:.6f}\n")
"""


def build(db: Path, size_mb: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    target = size_mb * 1024 * 1024
    while db.stat().st_size + Path(f"{db}-wal").stat().st_size < target:
        conn.execute("BEGIN")
        # 4 KB rows, distinct, about 2:1 compressible (hex of random bytes)
        conn.executemany("INSERT INTO blobs(data) VALUES (?)", [(os.urandom(2000).hex(),) for _ in range(2000)])
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    # The build writes with synchronous=OFF: put its GB of dirty pages on disk now, or
    # their writeback lands in the first timed copy and is blamed on it.
    fd = os.open(db, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    def __init__(self, db: Path, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(log)])
        while not log.exists() or log.stat().st_size < 1000:
            time.sleep(0.05)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        self.proc.terminate()
        self.proc.wait(10)

    def stall(self, start: float, end: float) -> tuple[float, int]:
        """(longest commit latency or gap between commits in [start, end], commits in it)."""
        worst, n, prev_end = 0.0, 0, None
        for line in self.log.read_text().splitlines():
            try:
                t0, t1 = map(float, line.split())
            except ValueError:
                continue
            if t1 < start or t0 > end:
                continue
            n += 1
            worst = max(worst, t1 - t0, (t0 - prev_end) if prev_end else 0.0)
            prev_end = t1
        return worst, n


def timed(fn: object, out: Path | None = None) -> tuple[float, float, float]:
    if out is not None:
        out.unlink(missing_ok=True)  # freeing the last copy is not part of the copy
    start = time.time()
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t, start, time.time()


def sqlite3_backup(db: Path, dst: Path, timeout: float) -> float | None:
    dst.unlink(missing_ok=True)
    t = time.perf_counter()
    try:
        subprocess.run(["sqlite3", str(db), f".backup '{dst}'"], check=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=None, help="work dir (default: a temp dir under /var/tmp)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved copy rounds (medians are reported)")
    ap.add_argument("--timeout-factor", type=float, default=10.0, help="give sqlite3 .backup N times our time")
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="hive-bench-backup-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    home.mkdir(exist_ok=True)
    db = home / "broker.sqlite"
    try:
        t = time.perf_counter()
        build(db, args.size_mb)
        size = db.stat().st_size
        mb = size / 1e6
        print(f"database: {mb:.0f} MB ({time.perf_counter() - t:.1f}s to build)")
        writer = Writer(db, work / "writer.log")
        time.sleep(1.0)
        base_stall, base_n = writer.stall(time.time() - 1.0, time.time())

        live, live_stalls, idle_theirs, idle_ours = [], [], [], []
        idle = work / "ours-idle.sqlite"
        for _ in range(args.rounds):  # interleaved, so caches and neighbours favour neither
            ours, s0, s1 = timed(lambda: archive.sqlite_copy(db, work / "ours.sqlite"), work / "ours.sqlite")
            live.append(ours)
            live_stalls.append(writer.stall(s0, s1)[0])
            writer.pause()
            try:
                idle_theirs.append(sqlite3_backup(db, work / "theirs-idle.sqlite", 3600) or float("inf"))
                idle_ours.append(timed(lambda: archive.sqlite_copy(db, idle), idle)[0])
            finally:
                writer.resume()
            time.sleep(0.5)
        engine = Engine(home, parse_config("compress_level = 1\n[scheduler]\nenabled = false\n"))
        stage = work / "stage"
        stage.mkdir(exist_ok=True)
        full, f0, f1 = timed(lambda: engine._take(Item("databases", "sqlite", "broker.sqlite", db), stage, []))
        full_stall, _ = writer.stall(f0, f1)
        stored = (stage / "db/broker.sqlite.gz").stat().st_size

        ours = statistics.median(live)
        limit = max(60.0, args.timeout_factor * ours)
        c0 = time.time()
        theirs_live = sqlite3_backup(db, work / "theirs-live.sqlite", limit)
        theirs_stall, _ = writer.stall(c0, time.time())
        writer.stop()
        theirs_idle, ours_idle = statistics.median(idle_theirs), statistics.median(idle_ours)

        def spread(xs: list[float]) -> str:
            return "/".join(f"{x:.2f}" for x in xs)

        print(f"writer alone:                      {base_n} commits/s, longest stall {base_stall * 1000:.1f} ms")
        print(f"hive-backup copy, writer running (median of {args.rounds}): {ours:.2f}s = {mb / ours:.0f} MB/s "
              f"[{spread(live)}], writer longest stall {max(live_stalls) * 1000:.1f} ms "
              f"[{'/'.join(f'{x * 1000:.0f}' for x in live_stalls)}]")
        print(f"hive-backup full pipeline (copy + row counts + gzip -1 + sha256): {full:.2f}s = "
              f"{mb / full:.0f} MB/s, stored {stored / 1e6:.0f} MB, writer longest stall {full_stall * 1000:.1f} ms")
        if theirs_live is None:
            print(f"sqlite3 .backup, writer running:   DID NOT FINISH in {limit:.0f}s "
                  f"(page-stepped copy restarted by each commit); writer longest stall {theirs_stall * 1000:.1f} ms")
        else:
            print(f"sqlite3 .backup, writer running:   {theirs_live:.2f}s = {mb / theirs_live:.0f} MB/s, "
                  f"writer longest stall {theirs_stall * 1000:.1f} ms")
        print(f"sqlite3 .backup, writer paused (median): {theirs_idle:.2f}s = {mb / theirs_idle:.0f} MB/s "
              f"[{spread(idle_theirs)}]")
        print(f"hive-backup copy, writer paused (median): {ours_idle:.2f}s = {mb / ours_idle:.0f} MB/s "
              f"[{spread(idle_ours)}]")
        print()
        base = theirs_live if theirs_live is not None else theirs_idle
        label = "sqlite3 .backup under the same writer" if theirs_live is not None else "idle sqlite3 .backup"
        print(f"throughput ratio (hive copy under writer / {label}): {base / ours:.2f}  (target >= 0.9)")
        print(f"throughput ratio per round: {'/'.join(f'{t / o:.2f}' for t, o in zip(idle_theirs, live, strict=True))}")
        print(f"throughput ratio (idle vs idle): {theirs_idle / ours_idle:.2f}")
        print(f"writer longest stall during hive-backup copy: {max(live_stalls) * 1000:.1f} ms, "
              f"full pipeline: {full_stall * 1000:.1f} ms  (target < 100 ms)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
