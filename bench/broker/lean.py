"""A second baseline for bench/broker: the leanest send path a Python broker on this
stack could have, to tell the broker's own overhead from what the stack costs.

    python bench/broker/lean.py NATS_URL DB_PATH full|normal

It is not a broker: it has broker.sqlite's schema (hive_broker.store's
migrations, so the same indexes), the same sync mode, nats-py and nats.micro,
and per send one INSERT, a reply, a wake and a `changed`, like the broker
(published as the broker does, through hivewire's `publish_many`). It has none of
the broker's checks or bookkeeping (names, sizes, known recipients, the duplicate
window, Effects, metrics, FTS catch-up, gauges), and its SQL runs on the event
loop: the requests of one loop pass share a transaction, committed before any of
them is answered, and past the broker's default `first_turn` in two turns, as the
broker does (the first answered before the rest are stored).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time

import msgspec
import nats
from nats.micro import add_service

from hive_broker.config import BrokerConfig
from hive_broker.store import open_sync
from hivewire import subjects
from hivewire.nats_transport import NatsTransport
from hivewire.wire import broker as w

SUBJECT = "bench.lean.*.send"
FIRST_TURN = BrokerConfig().first_turn
INSERT = ("INSERT INTO messages(sender, recipient, body, sent_at, in_reply_to, client_id, kind) "
          "VALUES (?, ?, ?, ?, ?, ?, 'message')")


async def main(url: str, path: str, sync: str) -> None:
    conn = open_sync(path)
    conn.execute(f"PRAGMA synchronous={'NORMAL' if sync == 'normal' else 'FULL'}")
    nc = await nats.connect(url)
    transport = NatsTransport(nc)
    svc = await add_service(nc, name="bench-lean", version="0.0.1")
    loop = asyncio.get_running_loop()
    encode, decode = msgspec.json.Encoder().encode, msgspec.json.Decoder(w.SendRequest).decode
    Item = tuple[str, str, w.SendRequest]  # (reply subject, sender, request)
    pending: list[Item] = []

    def flush() -> None:
        batch = pending[:]
        pending.clear()
        if len(batch) > FIRST_TURN:  # two turns, as the broker's Batcher does
            store(batch[:FIRST_TURN], batch[FIRST_TURN:])
        else:
            store(batch, [])

    def store(batch: list[Item], rest: list[Item]) -> None:
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        ids = [conn.execute(INSERT, (sender, req.to, req.body, now, req.in_reply_to, req.id)).lastrowid
               for _, sender, req in batch]
        conn.execute("COMMIT")
        loop.create_task(announce(batch, ids, now, rest))

    async def announce(batch: list[Item], ids: list[int | None], now: float, rest: list[Item]) -> None:
        out: list[tuple[str, bytes]] = []
        for (reply, _, req), mid in zip(batch, ids, strict=True):
            out.append((reply, encode(w.SendReply(id=str(mid), sent_at=now, recipients=[req.to]))))
            out.append((subjects.wake(req.to), encode(w.Wake(reason="message", ref=str(mid)))))
            out.append((subjects.BROKER_CHANGED, encode(w.Changed(table="messages", id=str(mid), op="insert"))))
        await transport.publish_many(out)  # as the broker publishes: one batch through hivewire
        if rest:  # the second turn, once the first one's replies are with the writer
            loop.call_soon(store, rest, [])

    async def handler(req: object) -> None:
        sender = req.subject.split(".")[2]  # type: ignore[attr-defined]
        pending.append((req._msg.reply, sender, decode(req.data)))  # type: ignore[attr-defined]
        if len(pending) == 1:
            loop.call_soon(flush)

    await svc.add_endpoint(name="send", subject=SUBJECT, handler=handler)
    gc.freeze()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
