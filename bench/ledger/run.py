"""Cost ledger ingest: turn rows at the rate of N busy agents, CPU per row of the ledger's
owner (a real hive-broker process) against a bare JetStream consumer in the same run.

    python bench/ledger/run.py [--agents 200] [--turn-s 5] [--seconds 20]

Load: every agent finishes a turn every `--turn-s` seconds (open loop, spread
evenly), each row published with JetStream on `hive.agent.<agent>.ledger` with
its Nats-Msg-Id, as the harness does; 200 agents at one turn per 5 s is 40 rows
a second. Ours: the broker's ledger (fetch, decode TurnStats, commit to
ledger.sqlite on its writer, budget alert check, ack). Baseline, consuming the
same rows live from the same stream: bench/ledger/bare.py (json.loads, one
sqlite transaction per batch, ack). CPU per row = the process's CPU seconds
from the first row until it holds every row, minus its idle CPU for as long
(measured before the load), divided by the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runlib import cpu_seconds, emit, paced, python_m, row, service_env, spawn, stop

from hivewire import codec, subjects
from hivewire.natsd import NatsServer
from hivewire.wire.agent import TurnStats

HERE = Path(__file__).resolve().parent


def count(db: Path, table: str = "turns") -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--turn-s", type=float, default=5.0, help="each agent ends a turn this often")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--idle-s", type=float, default=3.0)
    a = ap.parse_args()
    import nats

    with tempfile.TemporaryDirectory(prefix="hive-bench-ledger-") as tmp_s:
        tmp = Path(tmp_s)
        server = NatsServer(tmp / "nats").start()
        home = tmp / "home"
        home.mkdir()
        broker = bare = None
        nc = await nats.connect(server.url)
        try:
            broker = spawn(python_m("hive_broker"), service_env(home, server.url), tmp / "broker.log")
            js = nc.jetstream()
            deadline = time.monotonic() + 60
            while True:  # the broker creates the stream
                try:
                    await js.stream_info(subjects.LEDGER_STREAM)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the broker never created the ledger stream") from None
                    await asyncio.sleep(0.1)
            bare_db = tmp / "bare.sqlite"
            bare = spawn([sys.executable, str(HERE / "bare.py"), server.url, str(bare_db)],
                         service_env(home, server.url), tmp / "bare.log")
            while "ready" not in (tmp / "bare.log").read_text(errors="replace"):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # both settle after start-up
            idle0 = {p.pid: cpu_seconds(p.pid) for p in (broker, bare)}
            await asyncio.sleep(a.idle_s)
            idle_rate = {pid: (cpu_seconds(pid) - c) / a.idle_s for pid, c in idle0.items()}

            rate = a.agents / a.turn_s
            agents = [f"agent-{i}" for i in range(a.agents)]

            async def one(i: int) -> None:
                agent = agents[i % len(agents)]
                r = TurnStats(agent=agent, model="claude-haiku-4-5", wake_from="operator", result_kind="ok",
                              started_at=time.time() - 5, ended_at=time.time(), duration_ms=5000, input_tokens=1500,
                              output_tokens=65, cache_read_input_tokens=61000, cost_usd=0.009425,
                              model_costs={"claude-haiku-4-5": 0.009425}, turn_id=uuid.uuid4().hex)
                await js.publish(subjects.ledger_turn(agent), codec.encode(r), headers={"Nats-Msg-Id": r.turn_id})

            t0 = time.monotonic()
            cpu0 = {p.pid: cpu_seconds(p.pid) for p in (broker, bare)}
            n = await paced(rate, a.seconds, one)
            done: dict[int, tuple[float, float]] = {}
            dbs = {broker.pid: home / "ledger.sqlite", bare.pid: bare_db}
            deadline = time.monotonic() + 120
            while len(done) < 2 and time.monotonic() < deadline:
                for pid, db in dbs.items():
                    if pid not in done and count(db) >= n:
                        done[pid] = (time.monotonic() - t0, cpu_seconds(pid))
                await asyncio.sleep(0.02)
            if len(done) < 2:
                raise RuntimeError(f"not every row arrived: ledger {count(dbs[broker.pid])}, bare "
                                   f"{count(dbs[bare.pid])} of {n}")
            per_row = {pid: max(0.0, cpu - cpu0[pid] - idle_rate[pid] * dt) / n for pid, (dt, cpu) in done.items()}
            ours, base = per_row[broker.pid], per_row[bare.pid]
            print(f"{n} rows at {rate:g}/s ({a.agents} agents, a turn each per {a.turn_s:g}s) over {a.seconds:g}s")
            print(f"ledger (hive-broker): {ours * 1e6:.0f} us CPU/row (idle {idle_rate[broker.pid] * 100:.1f}% CPU), "
                  f"all in after {done[broker.pid][0]:.2f}s")
            print(f"bare JetStream consumer + sqlite: {base * 1e6:.0f} us CPU/row, "
                  f"all in after {done[bare.pid][0]:.2f}s")
            ratio = ours / base if base > 0 else None
            print(f"ratio ledger/bare (CPU per row): {ratio:.2f}" if ratio else "ratio: n/a")
            emit([row(f"ledger ingest CPU/row ({a.agents} agents, {rate:g} rows/s)", ratio,
                      "bare JetStream consumer + sqlite, same rows", "lower",
                      us_per_row=round(ours * 1e6, 1), bare_us_per_row=round(base * 1e6, 1), rows=n,
                      lag_s=round(done[broker.pid][0] - a.seconds, 2))])
        finally:
            await nc.close()
            stop(bare)
            stop(broker)
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
