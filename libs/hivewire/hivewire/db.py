"""sqlite helpers: WAL, busy timeout, one batching writer per file.

`Database` owns the only write connection to its file and runs it on one
thread. Concurrent `write()` calls are grouped into a single transaction
(each job in its own SAVEPOINT, so one failing job rolls back alone), which
keeps durable commits cheap under load. Reads run on a separate thread with
their own connection; WAL lets them proceed while the writer commits.

We use stdlib sqlite3 on dedicated threads rather than aiosqlite because a
batch must run as one hop to the writer thread, not one hop per statement.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog
from prometheus_client import Counter, Histogram

from hivewire.migrations import Migrations

log = structlog.get_logger("hivewire.db")
T = TypeVar("T")

BATCH_SIZE = Histogram(
    "hive_db_commit_batch_size",
    "Jobs committed per write transaction.",
    ["db"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
COMMIT_FAILURES = Counter("hive_db_commit_failures_total", "Write transactions that failed to commit.", ["db"])

Sync = Literal["OFF", "NORMAL", "FULL"]
BUSY_TIMEOUT_MS = 5000


def connect(path: Path | str, *, synchronous: Sync = "NORMAL", readonly: bool = False) -> sqlite3.Connection:
    """A connection with Hive's pragmas: WAL, busy timeout, autocommit mode."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn


class _Job:
    __slots__ = ("error", "fn", "future", "result")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any]) -> None:
        self.fn, self.future = fn, future
        self.result: Any = None
        self.error: BaseException | None = None


class Database:
    def __init__(
        self,
        path: Path | str,
        migrations: Migrations | None = None,
        *,
        synchronous: Sync = "FULL",
        label: str | None = None,
        max_batch: int = 256,
    ) -> None:
        self.path = Path(path)
        self.migrations = migrations
        self.synchronous: Sync = synchronous
        self.label = label or self.path.stem
        self.max_batch = max_batch
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix=f"db-w-{self.label}")
        self._reader_pool = ThreadPoolExecutor(2, thread_name_prefix=f"db-r-{self.label}")
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._wconn: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._loop_task: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------
    async def open(self) -> Database:
        loop = asyncio.get_running_loop()
        self._wconn = await loop.run_in_executor(self._writer_pool, self._open_writer)
        self._queue = asyncio.Queue()
        self._loop_task = asyncio.create_task(self._write_loop(), name=f"db-writer-{self.label}")
        return self

    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path, synchronous=self.synchronous)
        if self.migrations is not None:
            self.migrations.up(conn)
        return conn

    async def close(self) -> None:
        if self._loop_task is not None:
            assert self._queue is not None
            while not self._queue.empty():
                await asyncio.sleep(0.01)
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        loop = asyncio.get_running_loop()
        if self._wconn is not None:
            conn, self._wconn = self._wconn, None
            await loop.run_in_executor(self._writer_pool, conn.close)
        for c in self._readers:
            await loop.run_in_executor(self._reader_pool, c.close)
        self._readers.clear()
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)

    # --- writes -----------------------------------------------------------------
    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` inside a write transaction; returns once committed."""
        if self._queue is None:
            raise RuntimeError(f"database {self.label} is not open")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(fn, fut))
        return await fut

    async def _write_loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await loop.run_in_executor(self._writer_pool, self._run_batch, batch)
            except BaseException as exc:  # commit failed: every job in it is unchanged
                COMMIT_FAILURES.labels(self.label).inc()
                log.error("commit_failed", db=self.label, jobs=len(batch), error=str(exc))
                for job in batch:
                    job.error, job.result = exc, None
            BATCH_SIZE.labels(self.label).observe(len(batch))
            for job in batch:
                if job.future.done():
                    continue
                if job.error is not None:
                    job.future.set_exception(job.error)
                else:
                    job.future.set_result(job.result)

    def _run_batch(self, batch: list[_Job]) -> None:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                    conn.execute("RELEASE job")
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    job.error = exc
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # --- reads ------------------------------------------------------------------
    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, self._read, fn)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, synchronous=self.synchronous)
            self._local.conn = conn
            self._readers.append(conn)
        return fn(conn)
