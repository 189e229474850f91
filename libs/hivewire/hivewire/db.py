"""sqlite helpers: WAL, busy timeout, one batching writer per file.

`Database` owns the only write connection to its file. Concurrent `write()`
calls are grouped into a single transaction (each job in its own SAVEPOINT,
so one failing job rolls back alone), which keeps durable commits cheap under
load. Reads run on separate threads with their own connections; WAL lets them
proceed while the writer commits.

Where the writer runs is the owner's choice (`writer=`):
- "thread" (default): a dedicated thread, so the event loop never waits on
  sqlite; each batch costs two thread hops.
- "loop": on the event loop itself, in a callback that runs once per loop
  pass. No hops, but the loop is busy while a batch runs (its SQL and, with
  synchronous=FULL, its fsync). For a service whose requests are mostly
  writes and whose jobs are short: the broker's sends, where on a 2-core
  machine the two hops (each a thread wake-up) cost more than the SQL.

We use stdlib sqlite3 rather than aiosqlite because a batch must run as one
hop to the writer (or none), not one hop per statement.
"""

from __future__ import annotations

import asyncio
import queue
import random
import sqlite3
import threading
import time
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
    "Requests committed per write transaction (a job's weight: 1, or a batch's size).",
    ["db"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
COMMIT_FAILURES = Counter("hive_db_commit_failures_total", "Write transactions that failed to commit.", ["db"])

Sync = Literal["OFF", "NORMAL", "FULL"]
Writer = Literal["thread", "loop"]
BUSY_TIMEOUT_MS = 5000
BUSY_RETRY_S = 0.002


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


def in_batches(
    conn: sqlite3.Connection,
    step: Callable[[sqlite3.Connection], int],
    batch: int,
    *,
    pause_s: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """For tools with their own connection: run `step` (which handles at most `batch`
    rows and returns how many) in one transaction after another until a step comes
    up short, so a big backlog never holds the write lock for long; returns the total.

    `pause_s`: sleep between transactions, for a tool that runs beside a service
    writing the same file. Without it the next BEGIN follows the COMMIT within
    microseconds, and the service's writer, which waits in sqlite's busy handler
    (sleeping 1, 2, 5, 10 ... 100 ms between tries), almost never finds the lock
    free: measured, a `hive vacuum` of 200,000 rows held the broker's sends for
    3-5 s, up to the busy timeout. `progress(total)` after every commit."""
    total = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = step(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        total += n
        if progress is not None:
            progress(total)
        if n < batch:
            return total
        if pause_s:  # jittered: a fixed period can phase-lock with the busy handler's retries
            time.sleep(pause_s * random.uniform(0.5, 1.5))


class _Job:
    __slots__ = ("error", "fn", "future", "result", "weight")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any], weight: int) -> None:
        self.fn, self.future, self.weight = fn, future, weight
        self.result: Any = None
        self.error: BaseException | None = None


BatchHook = Callable[[int], None]


class Database:
    """One sqlite file: a single batching writer plus reader threads.

    With `writer="thread"`, `write()` hands its job to a thread-safe queue that
    the writer thread drains: one wake-up per batch and one `call_soon_threadsafe`
    back per batch (profiling the broker showed per-job hops between the event
    loop and an executor costing more than the SQL). With `writer="loop"` the
    jobs queued during one loop pass run in the next, on the loop. Either way
    each job runs in its own SAVEPOINT inside the batch's transaction, and
    callers resume only after COMMIT.
    """

    def __init__(
        self,
        path: Path | str,
        migrations: Migrations | None = None,
        *,
        synchronous: Sync = "FULL",
        label: str | None = None,
        max_batch: int = 256,
        autocheckpoint: bool | int = True,
        on_batch: BatchHook | None = None,
        writer: Writer = "thread",
        on_connect: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.writer: Writer = writer
        self.migrations = migrations
        self.synchronous: Sync = synchronous
        self.label = label or self.path.stem
        self.max_batch = max_batch
        # True: sqlite's default (checkpoint after a commit once the WAL holds 1000 pages).
        # An int: that many pages instead. False: checkpoints are entirely the owner's job
        # (the WAL then only restarts when a checkpoint catches up between two commits,
        # which under steady writes may be never).
        self.autocheckpoint = autocheckpoint
        self.on_batch = on_batch
        self.on_connect = on_connect  # run on every connection once open (e.g. to ATTACH another file)
        self._reader_pool = ThreadPoolExecutor(2, thread_name_prefix=f"db-r-{self.label}")
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._wconn: sqlite3.Connection | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Job] = []  # writer="loop": jobs waiting for the next pass
        self._busy_since: float | None = None  # writer="loop": when BEGIN first found the file locked
        self._loop_writer_open = False

    # --- lifecycle --------------------------------------------------------------
    async def open(self) -> Database:
        self._aloop = asyncio.get_running_loop()
        if self.writer == "loop":
            # migrations can take a while: open on a thread; from then on only the loop uses it
            self._wconn = await self._aloop.run_in_executor(self._reader_pool, self._open_writer)
            self._loop_writer_open = True
            return self
        opened: asyncio.Future[sqlite3.Connection] = self._aloop.create_future()
        self._thread = threading.Thread(target=self._writer_main, args=(opened,), name=f"db-w-{self.label}",
                                        daemon=True)
        self._thread.start()
        self._wconn = await opened
        return self

    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path, synchronous=self.synchronous)
        if self.migrations is not None:
            self.migrations.up(conn)
        if self.writer == "loop":
            conn.execute("PRAGMA busy_timeout=0")  # BEGIN must not wait: see _run_pending
        if self.autocheckpoint is not True:
            conn.execute(f"PRAGMA wal_autocheckpoint={int(self.autocheckpoint)}")
        if self.on_connect is not None:
            self.on_connect(conn)
        return conn

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop_writer_open:
            self._loop_writer_open = False  # refuse new jobs; those queued still run
            while self._pending:
                await asyncio.sleep(0 if self._busy_since is None else BUSY_RETRY_S)
            if self._wconn is not None:
                self._wconn.close()
        if self._thread is not None:
            self._jobs.put(None)  # after every job already queued
            thread, self._thread = self._thread, None
            await loop.run_in_executor(None, thread.join)
            await asyncio.sleep(0)  # let the last batch's results land
        # A read whose caller was cancelled still runs on its pool thread: let every read end
        # before its connection closes (closing under a running statement crashed a test run).
        await loop.run_in_executor(None, lambda: self._reader_pool.shutdown(wait=True))
        for c in self._readers:
            c.close()
        self._readers.clear()

    # --- writes -----------------------------------------------------------------
    async def write(self, fn: Callable[[sqlite3.Connection], T], *, weight: int = 1) -> T:
        """Run `fn(conn)` inside a write transaction; returns once committed.
        `weight`: how many requests the job carries (a batch of sends counts as
        its size in the commit batch metric)."""
        if self._loop_writer_open:
            assert self._aloop is not None
            fut: asyncio.Future[T] = self._aloop.create_future()
            self._pending.append(_Job(fn, fut, weight))
            if len(self._pending) == 1:
                self._aloop.call_soon(self._run_pending)
            return await fut
        if self._thread is None or self._aloop is None:
            raise RuntimeError(f"database {self.label} is not open")
        fut = self._aloop.create_future()
        self._jobs.put(_Job(fn, fut, weight))
        return await fut

    def _run_pending(self) -> None:
        """writer="loop": one batch of what queued up, then every caller's result.

        BEGIN does not wait: the loop writer's connection has no busy timeout, so
        while another process (`hive vacuum`) holds the write lock this retries every
        BUSY_RETRY_S with the loop free in between, instead of sleeping in sqlite's
        busy handler, whose back-off (up to 100 ms a try) would stall the loop and
        miss short gaps. After BUSY_TIMEOUT_MS of that the batch fails, unchanged."""
        assert self._aloop is not None and self._wconn is not None
        if not self._pending:
            return
        failed: sqlite3.Error | None = None
        try:
            self._wconn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            failed = exc
            if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                now = time.monotonic()
                if self._busy_since is None:
                    self._busy_since = now
                    log.info("write_lock_busy", db=self.label, retry_every_ms=BUSY_RETRY_S * 1000)
                if now - self._busy_since < BUSY_TIMEOUT_MS / 1000:
                    self._aloop.call_later(BUSY_RETRY_S, self._run_pending)  # the jobs stay queued
                    return
        self._busy_since = None
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
        if self._pending:
            self._aloop.call_soon(self._run_pending)
        if failed is not None:
            self._fail(batch, failed, "begin_failed")
        else:
            self._commit(self._wconn, batch, begun=True)
        _resolve(batch)

    def _writer_main(self, opened: asyncio.Future[sqlite3.Connection]) -> None:
        assert self._aloop is not None
        loop = self._aloop
        try:
            conn = self._open_writer()
        except BaseException as exc:
            loop.call_soon_threadsafe(_set_exception, opened, exc)
            return
        loop.call_soon_threadsafe(_set_result, opened, conn)
        try:
            self._drain(conn, loop)
        finally:
            conn.close()

    def _drain(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch, stop = [first], False
            while len(batch) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._commit(conn, batch)
            try:
                loop.call_soon_threadsafe(_resolve, batch)
            except RuntimeError:  # the loop is gone (shutdown): nobody is waiting
                return
            if stop:
                return

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job], *, begun: bool = False) -> None:
        """Run a batch as one transaction; on failure every job in it gets the error."""
        try:
            self._run_batch(conn, batch, begun=begun)
        except BaseException as exc:  # commit failed: every job in it is unchanged
            self._fail(batch, exc, "commit_failed")
        size = sum(job.weight for job in batch)
        BATCH_SIZE.labels(self.label).observe(size)
        if self.on_batch is not None:
            self.on_batch(size)

    def _fail(self, batch: list[_Job], exc: BaseException, event: str) -> None:
        """A transaction that did not happen: counted, logged once, and every job gets `exc`."""
        COMMIT_FAILURES.labels(self.label).inc()
        log.error(event, db=self.label, jobs=len(batch), error=str(exc))
        for job in batch:
            job.error, job.result = exc, None

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, batch: list[_Job], *, begun: bool = False) -> None:
        if not begun:
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
            if self.on_connect is not None:
                self.on_connect(conn)
            self._local.conn = conn
            self._readers.append(conn)
        return fn(conn)


def _resolve(batch: list[_Job]) -> None:
    for job in batch:
        if job.future.done():  # the caller was cancelled; its job still ran
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
