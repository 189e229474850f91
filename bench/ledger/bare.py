"""The baseline consumer for bench/ledger: a bare nats-py JetStream pull consumer on the same
stream that decodes each row with json.loads, inserts the batch into sqlite (WAL,
synchronous=FULL, one transaction per batch, INSERT OR IGNORE on the turn id) and acks
each message: the least any durable ledger does per row, without Hive's code.

    python bench/ledger/bare.py NATS_URL DB_PATH
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys

import nats
from nats.js.api import AckPolicy, ConsumerConfig


async def main(url: str, db: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS turns (turn_id TEXT PRIMARY KEY, agent TEXT, cost_usd REAL, "
                 "tokens INTEGER, ts REAL) WITHOUT ROWID")
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_consumer("HIVE_LEDGER", ConsumerConfig(durable_name="bench-bare", ack_policy=AckPolicy.EXPLICIT,
                                                        ack_wait=10.0, max_ack_pending=-1))
    psub = await js.pull_subscribe_bind(durable="bench-bare", stream="HIVE_LEDGER")
    print("ready", flush=True)
    while True:
        try:
            msgs = await psub.fetch(512, timeout=1.0)
        except TimeoutError:
            continue
        rows = []
        for m in msgs:
            d = json.loads(m.data)
            rows.append((d["turn_id"], m.subject.split(".")[2], d["cost_usd"],
                         d["input_tokens"] + d["output_tokens"], d["ended_at"]))
        conn.execute("BEGIN")
        conn.executemany("INSERT OR IGNORE INTO turns VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        for m in msgs:
            await m.ack()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
