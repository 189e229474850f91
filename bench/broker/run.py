"""Broker benchmark: N concurrent agents sending through the real broker process,
against a bare nats.micro echo service measured in the same run.

    python bench/broker/run.py [--agents 32] [--seconds 5] [--rounds 1] [--rate 1000] [--sync normal|full]

Prints sends/s, p50/p99 send latency for both, the broker/echo ratio, the p99
send-to-wake latency at a fixed send rate (once after the floods, once right
after a 5 s broker flood, while the search indexer catches up), and checks that
every acknowledged send is in broker.sqlite exactly once. Two more rows in the same run show where
the gap comes from: `announce` (the echo plus the broker's two publishes per
send) and `lean` (lean.py: the schema, sync mode and publishes of the broker
with nothing else). Not a test: numbers depend on the box.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import nats

from hivewire import subjects
from hivewire.natsd import NatsServer
from hivewire.wire import broker as w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runlib import cpu_user_sys, paced

ECHO_SUBJECT = "bench.echo.{agent}.send"
AFTER_FLOOD_S = 5.0  # ~140,000 sends here: more than the indexer leaves for later in a flood
ANNOUNCE_PREFIX = "bench.announce"


# --- the baseline: a bare nats.micro echo service (own process, like the broker) ---
async def echo_server(url: str) -> None:
    """Two endpoints: a bare echo (the baseline), and an echo that also publishes what
    the wire contract makes the broker publish per send (a wake and a `changed`) but
    stores nothing, each with nats-py's own publish (the broker batches its publishes
    through hivewire's publish_many, so it can beat this row's cost per send)."""
    from nats.micro import add_service

    nc = await nats.connect(url)
    svc = await add_service(nc, name="bench-echo", version="0.0.1")
    reply = msgspec.json.encode(w.SendReply(id="1", sent_at=0.0))

    async def handler(req: object) -> None:
        await req.respond(reply)  # type: ignore[attr-defined]

    async def announcing(req: object) -> None:
        to = msgspec.json.decode(req.data, type=w.SendRequest).to  # type: ignore[attr-defined]
        await nc.publish(subjects.wake(to), msgspec.json.encode(w.Wake(reason="message", ref="1")))
        await nc.publish(subjects.BROKER_CHANGED, msgspec.json.encode(w.Changed(table="messages", id="1", op="insert")))
        await req.respond(reply)  # type: ignore[attr-defined]

    await svc.add_endpoint(name="echo", subject="bench.echo.*.send", handler=handler)
    await svc.add_endpoint(name="announce", subject=f"{ANNOUNCE_PREFIX}.*.send", handler=announcing)
    await asyncio.Event().wait()


async def mean_commit_batch(nc: nats.NATS) -> float:
    """Sends per broker.sqlite commit so far, from the broker's own /metrics (found via
    its micro service metadata, as `nats micro info hive-broker` shows it)."""
    import json
    import urllib.request

    info = json.loads((await nc.request("$SRV.INFO.hive-broker", b"", timeout=2)).data)
    url = info["metadata"]["metrics_url"]
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("hive_broker_commit_batch_size_")}
    return values["hive_broker_commit_batch_size_sum"] / max(values["hive_broker_commit_batch_size_count"], 1)


def commit_ms(path: Path, n: int = 200) -> float:
    """Median time of a one-row commit with synchronous=FULL in WAL mode on this disk:
    the fsync every FULL commit waits for (a scratch file beside the broker's)."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b TEXT)")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t(b) VALUES ('x')")
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t0)
    conn.close()
    return statistics.median(times) * 1e3


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def flood(nc: nats.NATS, subject_of: object, agents: list[str], seconds: float,
                acked: list[str] | None) -> tuple[int, list[float]]:
    """Every agent sends back-to-back for `seconds`; returns (sends, latencies)."""
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    run = os.urandom(3).hex()  # client ids unique per flood: a warm-up's ids must not turn into duplicates
    count = 0

    async def agent(i: int) -> None:
        nonlocal count
        me, peer = agents[i], agents[(i + 1) % len(agents)]
        subj = subject_of(me)  # type: ignore[operator]
        n = 0
        while time.perf_counter() < stop:
            n += 1
            req = w.SendRequest(to=peer, body=f"bench message {n} from {me}", id=f"{me}-{run}-{n}")
            body = msgspec.json.encode(req)
            t0 = time.perf_counter()
            msg = await nc.request(subj, body, timeout=10)
            lat.append(time.perf_counter() - t0)
            if acked is not None:
                acked.append(msgspec.json.decode(msg.data, type=w.SendReply).id)
            count += 1

    await asyncio.gather(*(agent(i) for i in range(len(agents))))
    return count, lat


async def wake_latency(nc: nats.NATS, agents: list[str], rate: float, seconds: float) -> list[float]:
    """Send at a fixed rate; measure send start -> wake received for each message."""
    started: dict[str, float] = {}
    woke: dict[str, float] = {}

    async def on_wake(msg: object) -> None:
        ref = msgspec.json.decode(msg.data, type=w.Wake).ref  # type: ignore[attr-defined]
        woke.setdefault(ref, time.perf_counter())

    sub = await nc.subscribe(subjects.agent_pattern("wake"), cb=on_wake)
    await nc.flush()

    async def one(i: int) -> None:
        me, peer = agents[i % len(agents)], agents[(i + 1) % len(agents)]
        t0 = time.perf_counter()
        msg = await nc.request(subjects.broker(me, "send"),
                               msgspec.json.encode(w.SendRequest(to=peer, body=f"wake probe {i}")), timeout=10)
        started[msgspec.json.decode(msg.data, type=w.SendReply).id] = t0

    await paced(rate, seconds, one)
    await asyncio.sleep(0.5)
    await sub.unsubscribe()
    return [woke[k] - t0 for k, t0 in started.items() if k in woke]


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="hive-bench-"))
    server = NatsServer(tmp / "nats").start()
    home = tmp / "home"
    home.mkdir()
    env = {**os.environ, "HIVE_HOME": str(home), "HIVE_NATS_URL": server.url, "HIVE_METRICS_ADDR": "127.0.0.1:0",
           "HIVE_LOG_LEVEL": "warning", "HIVE_BROKER_SYNC": args.sync}
    prof = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    broker = subprocess.Popen([sys.executable, *prof, "-m", "hive_broker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=(tmp / "broker.log").open("wb"))
    echo = subprocess.Popen([sys.executable, __file__, "--echo-server", server.url], env=env)
    lean = subprocess.Popen([sys.executable, str(Path(__file__).with_name("lean.py")), server.url,
                             str(tmp / "lean.sqlite"), args.sync], env=env, stdout=subprocess.DEVNULL,
                            stderr=(tmp / "lean.log").open("wb"))
    acked: list[str] = []
    assert server.proc is not None
    nats_pid = server.proc.pid
    try:
        nc = await nats.connect(server.url)
        agents = [f"bench-{i}" for i in range(args.agents)]
        for _ in range(200):
            try:
                for a in agents:
                    await nc.request(subjects.broker_registry("upsert"),
                                     msgspec.json.encode(w.RegistryRequest(name=a)), timeout=1)
                await nc.request("bench.echo.x.send", b"{}", timeout=1)
                await nc.request("bench.lean.x.send", msgspec.json.encode(w.SendRequest(to="y", body="up?")), timeout=1)
                break
            except Exception:
                await asyncio.sleep(0.1)
        # warm-up both
        await flood(nc, lambda a: ECHO_SUBJECT.format(agent=a), agents, 0.5, None)
        await flood(nc, lambda a: subjects.broker(a, "send"), agents, 0.5, [])
        await flood(nc, lambda a: f"bench.lean.{a}.send", agents, 0.5, None)

        # CPU each process spends per request shows where the ratio goes; the cores kept
        # busy (all three processes) show whether a row is CPU-bound or taking turns.
        # With --rounds N the four floods run N times in rotation, so that drift of the
        # machine's speed hits every row alike; the table sums the rounds.
        names = ("echo", "announce", "broker", "lean")
        sends = dict.fromkeys(names, 0)
        lats: dict[str, list[float]] = {name: [] for name in names}
        # per row: server user s, server sys s, client s, nats-server s, wall s
        cpu = {name: [0.0] * 5 for name in names}
        per_round: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name, pid, subject_of, acked_ids in (
                ("echo", echo.pid, lambda a: ECHO_SUBJECT.format(agent=a), None),
                ("announce", echo.pid, lambda a: f"{ANNOUNCE_PREFIX}.{a}.send", None),
                ("broker", broker.pid, lambda a: subjects.broker(a, "send"), acked),
                ("lean", lean.pid, lambda a: f"bench.lean.{a}.send", None),
            ):
                c0, k0, s0, t0 = cpu_user_sys(pid), sum(cpu_user_sys(os.getpid())), sum(cpu_user_sys(nats_pid)), \
                    time.perf_counter()
                n, lat = await flood(nc, subject_of, agents, args.seconds, acked_ids)
                c1, k1, s1, t1 = cpu_user_sys(pid), sum(cpu_user_sys(os.getpid())), sum(cpu_user_sys(nats_pid)), \
                    time.perf_counter()
                sends[name] += n
                lats[name] += lat
                for i, d in enumerate((c1[0] - c0[0], c1[1] - c0[1], k1 - k0, s1 - s0, t1 - t0)):
                    cpu[name][i] += d
                per_round[name].append(n / args.seconds)
        batch = await mean_commit_batch(nc)
        wake = await wake_latency(nc, agents, args.rate, args.wake_seconds)
        # Again right after a broker flood, so the search indexer (which held back the
        # newest 100,000 during it) catches up meanwhile: the worst case for a steady rate.
        await flood(nc, lambda a: subjects.broker(a, "send"), agents, AFTER_FLOOD_S, acked)
        wake_after = await wake_latency(nc, agents, args.rate, args.wake_seconds)
        await nc.close()
    finally:
        echo.terminate()
        lean.terminate()
        lean.wait(10)
        broker.terminate()
        echo.wait(10)
        broker.wait(10)
        server.stop()

    # durability: every acknowledged send is in the file, exactly once
    import sqlite3

    conn = sqlite3.connect(home / "broker.sqlite")
    ids = [str(r[0]) for r in conn.execute("SELECT id FROM messages")]
    conn.close()
    stored = set(ids)
    missing = [i for i in acked if i not in stored]

    rates = {name: n / (args.seconds * args.rounds) for name, n in sends.items()}
    fsync = commit_ms(tmp / "fsync-probe.sqlite")
    echo_p50 = pct(lats["echo"], .5) * 1e3
    print(f"agents={args.agents} seconds={args.seconds} rounds={args.rounds} cores={os.cpu_count()} "
          f"(sqlite synchronous={args.sync.upper()})")
    print(f"{'':9} {'sends/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'server CPU us/send (user+sys)':>30}"
          f" {'client':>7} {'nats':>5} {'cores busy':>10}")
    for name in names:
        lat, n = lats[name], max(sends[name], 1)
        user, sys_, client, natsd = (x / n for x in cpu[name][:4])
        busy = sum(cpu[name][:4]) / cpu[name][4]
        print(f"{name:9} {rates[name]:10.0f} {pct(lat, .5) * 1e3:8.2f} {pct(lat, .99) * 1e3:8.2f} "
              f"{(user + sys_) * 1e6:17.1f} {f'({user * 1e6:.1f}+{sys_ * 1e6:.1f})':>12}"
              f" {client * 1e6:7.1f} {natsd * 1e6:5.1f} {busy:10.2f}")
    print(f"(client, nats: CPU us/send of this process and of nats-server; cores busy: all three, of {os.cpu_count()})")
    print("(announce: an echo that also publishes a wake and a change per send, storing nothing)")
    print("(lean: bench/broker/lean.py, broker.sqlite's schema and sync mode with one INSERT and three publishes"
          " per send, SQL on the event loop, none of the broker's checks or bookkeeping)")
    print(f"ratio announce/echo (sends/s): {rates['announce'] / rates['echo']:.2f}")
    print(f"ratio lean/echo (sends/s): {rates['lean'] / rates['echo']:.2f}  (a send path with nothing but its INSERT"
          f" and publishes; broker/lean: {rates['broker'] / rates['lean']:.2f})")
    print(f"ratio broker/echo (sends/s): {rates['broker'] / rates['echo']:.2f}"
          f"  (broker: {batch:.1f} requests per commit on average)")
    if args.rounds > 1:
        each = [b / e for b, e in zip(per_round["broker"], per_round["echo"], strict=True)]
        print(f"ratio broker/echo per round: {' '.join(f'{r:.2f}' for r in each)}"
              f" (median {statistics.median(each):.2f}, spread {max(each) - min(each):.2f})")
    print(f"disk: a one-row FULL commit (its fsync) takes {fsync:.2f} ms (median of 200); a send that waited "
          f"one on top of the echo's p50 of {echo_p50:.2f} ms caps a FULL ratio near "
          f"{echo_p50 / (echo_p50 + fsync):.2f} (an estimate, not a measurement)")
    for label, lat in (("", wake), (" right after a broker flood", wake_after)):
        print(f"send-to-wake at {args.rate:.0f} msg/s{label}: n={len(lat)} p50={pct(lat, .5) * 1e3:.2f} ms "
              f"p99={pct(lat, .99) * 1e3:.2f} ms (mean {statistics.fmean(lat) * 1e3 if lat else 0:.2f} ms)")
    print(f"durability: {len(acked)} acknowledged sends, {len(missing)} missing from broker.sqlite, "
          f"{len(ids) - len(stored)} duplicates")
    if missing or args.keep:
        print(f"kept for inspection: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if missing else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--echo-server":
        asyncio.run(echo_server(sys.argv[2]))
        sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=32)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=1,
                   help="run the four floods this many times in rotation (pairs each broker run with an echo run "
                        "made just before it; prints the ratio per round)")
    p.add_argument("--rate", type=float, default=1000.0, help="send rate for the send-to-wake phase")
    p.add_argument("--wake-seconds", type=float, default=5.0)
    p.add_argument("--keep", action="store_true", help="keep the run's HIVE_HOME and logs (kept anyway on a loss)")
    p.add_argument("--profile", help="write a cProfile of the broker process to this file")
    p.add_argument("--sync", choices=["full", "normal"], default="normal",
                   help="broker.sqlite synchronous mode (HIVE_BROKER_SYNC); normal is the broker's default")
    sys.exit(asyncio.run(main(p.parse_args())))
