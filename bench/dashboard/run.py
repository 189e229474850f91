"""Dashboard SSE fan-out: 100 concurrent SSE clients on one agent's page of a
real dashboard process; latency from NATS publish to client receipt.

    python bench/dashboard/run.py [--clients 100] [--events 200] [--rate 50]

A real nats-server and `python -m hive_dashboard` (operator token from
HIVE_OPERATOR_TOKEN). The clients open `/api/stream?agent=<agent>` with the
bearer token; the publisher sends LiveEvents on `hive.agent.<agent>.events`
carrying their publish time. Baseline, in the same run: the same number of
plain NATS subscribers on that subject (the floor any fan-out sits on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runlib import emit, pct, python_m, row, service_env, spawn, stop

from hivewire import codec, subjects
from hivewire.natsd import NatsServer
from hivewire.procs import free_port
from hivewire.wire.agent import LiveEvent

AGENT = "bench-sse"
TOKEN = "bench-operator-token-0123456789"


async def sse_client(url: str, lat: list[float], ready: asyncio.Event, counter: list[int], n_clients: int,
                     stop_at: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as c, \
            c.stream("GET", f"{url}/api/stream", params={"agent": AGENT}, headers=headers) as r:
        r.raise_for_status()
        counter[0] += 1
        if counter[0] == n_clients:
            ready.set()
        kind = ""
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "event":
                now = time.time()
                data = json.loads(line[5:])
                ev = data.get("event", data)
                sent = (ev.get("payload") or {}).get("sent")
                if sent is not None:
                    lat.append(now - sent)
                    if ev["payload"].get("last"):
                        return
            if stop_at.is_set():
                return


async def nats_baseline(url: str, n_clients: int, n_events: int, rate: float) -> list[float]:
    lat: list[float] = []
    conns = [await nats.connect(url) for _ in range(min(n_clients, 10))]
    subs = []
    for i in range(n_clients):
        async def cb(msg: object) -> None:
            sent = json.loads(msg.data)["payload"]["sent"]  # type: ignore[attr-defined]
            lat.append(time.time() - sent)
        subs.append(await conns[i % len(conns)].subscribe(subjects.events(AGENT), cb=cb))
    for c in conns:
        await c.flush()
    pub = await nats.connect(url)
    await publish_events(pub, n_events, rate)
    await asyncio.sleep(1.0)
    for c in [*conns, pub]:
        await c.close()
    return lat


async def publish_events(nc: nats.NATS, n: int, rate: float) -> None:
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        ev = LiveEvent(id=i + 1, ts=time.time(), kind="assistant_text",
                       payload={"text": f"bench {i}", "sent": time.time(), "last": i == n - 1})
        await nc.publish(subjects.events(AGENT), codec.encode(ev))
        await nc.flush()


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="hive-bench-sse-"))
    server = NatsServer(tmp / "nats").start()
    port = free_port()
    home = tmp / "home"
    home.mkdir()
    dash = spawn(python_m("hive_dashboard"), service_env(home, server.url, HIVE_DASHBOARD_ADDR=f"127.0.0.1:{port}",
                                                         HIVE_OPERATOR_TOKEN=TOKEN), tmp / "dashboard.log")
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as c:
            for _ in range(300):
                try:
                    if (await c.get(url + "/healthz")).json().get("nats") == "connected":
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        base = await nats_baseline(server.url, args.clients, args.events, args.rate)
        lat: list[float] = []
        ready, stop_at, counter = asyncio.Event(), asyncio.Event(), [0]
        tasks = [asyncio.create_task(sse_client(url, lat, ready, counter, args.clients, stop_at))
                 for _ in range(args.clients)]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(0.5)
        nc = await nats.connect(server.url)
        await publish_events(nc, args.events, args.rate)
        _done, pending = await asyncio.wait(tasks, timeout=30)
        stop_at.set()
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()
    finally:
        stop(dash)
        server.stop()
    expected = args.clients * args.events
    p99, b99 = pct(lat, 0.99), pct(base, 0.99)
    print(f"clients={args.clients} events={args.events} at {args.rate:.0f}/s on {AGENT}'s page")
    print(f"dashboard SSE: received {len(lat)}/{expected}  p50={pct(lat, .5) * 1e3:.1f} ms  p99={p99 * 1e3:.1f} ms  "
          f"max={max(lat, default=0) * 1e3:.1f} ms")
    print(f"bare NATS subscribers: received {len(base)}/{expected}  p50={pct(base, .5) * 1e3:.2f} ms  "
          f"p99={b99 * 1e3:.2f} ms")
    ratio = p99 / b99 if b99 > 0 else None
    print(f"ratio p99 dashboard/bare NATS: {ratio:.1f}" if ratio else "ratio: n/a")
    emit([row(f"SSE fan-out ({args.clients} clients) p99", ratio, "p99 of bare NATS subscribers", "lower",
              p99_ms=round(p99 * 1e3, 1), p50_ms=round(pct(lat, .5) * 1e3, 1), baseline_p99_ms=round(b99 * 1e3, 2),
              received=len(lat), expected=expected)])
    return 0 if len(lat) == expected else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--rate", type=float, default=50.0)
    sys.exit(asyncio.run(main(p.parse_args())))
