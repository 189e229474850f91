"""Scale: N agents, each a real harness process driving the real claude CLI
against `hive sim-model`, exchanging messages through the real broker.

    python bench/scale/run.py [--agents 200] [--seconds 300] [--rate 0.5] [--drain 120]

Every agent is `python -m hive_harness` (its own process, NATS connection,
events.sqlite) running `claude` turns against the Messages-API simulator
(`hive sim-model`, scripted replies: no model). A driver sends, at `--rate`
messages per second in total, messages from one agent to another
(`hive.broker.<from>.send`, with a client id); each harness is woken, takes the
message with `recv`, runs one CLI turn and acks it. After `--seconds` sending
stops and the run drains for up to `--drain` seconds.

Reports: p50/p99 send-to-wake (send request -> `hive.agent.<to>.wake` from the
broker) and send-to-turn (send request -> the harness's `turn_start` for that
message, which includes waiting behind the agent's running turn), broker CPU,
RSS per harness process, and losses: every acknowledged send must be stored
once, acked once and started as a turn (a second start is reported as a visible
redelivery). Baseline for the ratio: the same sends at the same rate with the
harnesses stopped (broker-only send-to-wake, measured first in the same run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runlib import CLAUDE, cpu_seconds, emit, paced, pct, python_m, row, rss_kb, service_env, spawn, stop

from hivewire import subjects
from hivewire.natsd import NatsServer
from hivewire.procs import free_port
from hivewire.wire import broker as w


class Tracker:
    def __init__(self) -> None:
        self.sent: dict[str, float] = {}  # message id -> send start
        self.woke: dict[str, float] = {}
        self.turns: dict[str, list[float]] = {}
        self.failed_sends = 0

    async def on_wake(self, msg: object) -> None:
        ref = msgspec.json.decode(msg.data, type=w.Wake).ref  # type: ignore[attr-defined]
        self.woke.setdefault(ref, time.perf_counter())

    async def on_event(self, msg: object) -> None:
        ev = json.loads(msg.data)  # type: ignore[attr-defined]
        if ev.get("kind") == "turn_start":
            mid = (ev.get("payload") or {}).get("message_id")
            if mid:
                self.turns.setdefault(str(mid), []).append(time.perf_counter())


async def drive(nc: nats.NATS, agents: list[str], rate: float, seconds: float, tr: Tracker, tag: str) -> int:
    rnd = random.Random(7)

    async def one(i: int) -> None:
        a, b = rnd.sample(agents, 2)
        t0 = time.perf_counter()
        req = w.SendRequest(to=b, body=f"scale {tag} {i}: please reply ok", id=f"{tag}-{i}")
        for _ in range(5):
            try:
                m = await nc.request(subjects.broker(a, "send"), msgspec.json.encode(req), timeout=10)
                tr.sent[msgspec.json.decode(m.data, type=w.SendReply).id] = t0
                return
            except Exception:
                await asyncio.sleep(0.5)
        tr.failed_sends += 1

    return await paced(rate, seconds, one)


def cli_env(tmp: Path, sim_url: str) -> dict[str, str]:
    home = tmp / "userhome"
    home.mkdir(exist_ok=True)
    return {"HIVE_AGENT_CMD": str(CLAUDE), "ANTHROPIC_BASE_URL": sim_url, "ANTHROPIC_API_KEY": "sk-simulator",
            "HOME": str(home), "HIVE_WAKE_POLL_S": "5", "HIVE_HEARTBEAT_S": "5", "HIVE_ALLOWED_TOOLS": "",
            "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


async def main(args: argparse.Namespace) -> int:
    if not CLAUDE.exists():
        print(f"claude CLI not installed at {CLAUDE} (scripts/install)")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="hive-bench-scale-"))
    server = NatsServer(tmp / "nats").start()
    home = tmp / "home"
    home.mkdir()
    sim_port = free_port()
    procs = []
    harnesses: dict[str, object] = {}
    try:
        broker = spawn(python_m("hive_broker"), service_env(home, server.url), tmp / "logs/broker.log")
        sim = spawn([sys.executable, "-m", "hivewire.cli", "sim-model", "--port", str(sim_port)],
                    service_env(home, server.url), tmp / "logs/sim.log")
        procs += [broker, sim]
        nc = await nats.connect(server.url)
        agents = [f"scale-{i}" for i in range(args.agents)]
        for _ in range(300):
            try:
                for a in agents:
                    await nc.request(subjects.broker_registry("upsert"),
                                     msgspec.json.encode(w.RegistryRequest(name=a)), timeout=2)
                break
            except Exception:
                await asyncio.sleep(0.1)
        base = Tracker()
        await nc.subscribe(subjects.agent_pattern("wake"), cb=base.on_wake)
        # Baseline: broker-only send-to-wake at the same rate, before any harness runs.
        await drive(nc, agents, args.rate, min(args.seconds, 20), base, "base")
        await asyncio.sleep(1)
        base_wake = [base.woke[k] - t for k, t in base.sent.items() if k in base.woke]
        # Drop the baseline's messages so harnesses start on empty inboxes (ack them as their recipients).
        for a in agents:
            while True:
                r = await nc.request(subjects.broker(a, "recv"), msgspec.json.encode(w.RecvRequest(max=32)), timeout=10)
                got = msgspec.json.decode(r.data, type=w.RecvReply).messages
                if not got:
                    break
                await nc.request(subjects.broker(a, "ack"), msgspec.json.encode(w.AckRequest(ids=[m.id for m in got])),
                                 timeout=10)
        env_cli = cli_env(tmp, f"http://127.0.0.1:{sim_port}")
        t_spawn = time.perf_counter()
        for a in agents:
            harnesses[a] = spawn(python_m("hive_harness"), service_env(home, server.url, HIVE_AGENT=a, **env_cli),
                                 tmp / f"logs/harness-{a}.log")
            await asyncio.sleep(args.spawn_gap)
        tr = Tracker()
        await nc.subscribe(subjects.agent_pattern("wake"), cb=tr.on_wake)
        await nc.subscribe(subjects.agent_pattern("events"), cb=tr.on_event)
        # wait until every harness announced presence
        present: set[str] = set()

        async def on_presence(msg: object) -> None:
            present.add(msg.subject.split(".")[2])  # type: ignore[attr-defined]

        psub = await nc.subscribe(subjects.agent_pattern("presence"), cb=on_presence)
        deadline = time.monotonic() + 60 + args.agents
        while len(present) < len(agents) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await psub.unsubscribe()
        alive = [a for a in agents if harnesses[a].poll() is None]  # type: ignore[attr-defined]
        print(f"{len(present)}/{len(agents)} harnesses present, {len(alive)} alive, "
              f"spawned in {time.perf_counter() - t_spawn:.1f}s")
        cpu0, t0 = cpu_seconds(broker.pid), time.perf_counter()
        rss = [rss_kb(h.pid) for h in harnesses.values()]  # type: ignore[attr-defined]
        n = await drive(nc, agents, args.rate, args.seconds, tr, "run")
        send_elapsed = time.perf_counter() - t0
        drain_deadline = time.monotonic() + args.drain
        db = sqlite3.connect(f"file:{home / 'broker.sqlite'}?mode=ro", uri=True)
        while time.monotonic() < drain_deadline and db.execute(
                "SELECT COUNT(*) FROM messages WHERE client_id LIKE 'run-%' AND acked_at IS NULL").fetchone()[0]:
            await asyncio.sleep(0.5)  # every message handled (its turn ended and acked it)
        db.close()
        elapsed = time.perf_counter() - t0
        broker_cpu = (cpu_seconds(broker.pid) - cpu0) / elapsed
        rss += [rss_kb(h.pid) for h in harnesses.values()]  # type: ignore[attr-defined]
        await nc.close()
    finally:
        for h in harnesses.values():
            stop(h)  # type: ignore[arg-type]
        for p in reversed(procs):
            stop(p)
        server.stop()
    conn = sqlite3.connect(home / "broker.sqlite")
    rows = {str(r[0]): r for r in conn.execute(
        "SELECT id, acked_at, redelivery_count FROM messages WHERE client_id LIKE 'run-%'")}
    conn.close()
    missing = [k for k in tr.sent if k not in rows]
    unacked = [k for k in tr.sent if k in rows and rows[k][1] is None]
    not_started = [k for k in tr.sent if k not in tr.turns]
    twice = [k for k, v in tr.turns.items() if len(v) > 1]
    redelivered = sum(1 for r in rows.values() if r[2])
    wake = [tr.woke[k] - t for k, t in tr.sent.items() if k in tr.woke]
    turn = [tr.turns[k][0] - t for k, t in tr.sent.items() if k in tr.turns]
    rss_mb = [x / 1024 for x in rss if x]
    print(f"agents={args.agents} sent={len(tr.sent)}/{n} in {send_elapsed:.0f}s at {args.rate}/s, drained in "
          f"{elapsed - send_elapsed:.0f}s; failed sends={tr.failed_sends}")
    print(f"baseline (broker only, same rate): send-to-wake p50={pct(base_wake, .5) * 1e3:.1f} ms "
          f"p99={pct(base_wake, .99) * 1e3:.1f} ms")
    print(f"with {args.agents} harnesses: send-to-wake p50={pct(wake, .5) * 1e3:.1f} ms "
          f"p99={pct(wake, .99) * 1e3:.1f} ms; "
          f"send-to-turn_start p50={pct(turn, .5):.2f} s p99={pct(turn, .99):.2f} s")
    print(f"broker CPU {broker_cpu * 100:.1f}% of a core; harness RSS mean {sum(rss_mb) / max(len(rss_mb), 1):.0f} MB "
          f"max {max(rss_mb, default=0):.0f} MB (python harness process; the claude CLI runs only during a turn)")
    print(f"lost: {len(missing)} not stored, {len(unacked)} stored but never acked, {len(not_started)} never "
          f"started as a turn; {len(twice)} started twice (visible redeliveries: {redelivered})")
    ratio = pct(wake, .99) / pct(base_wake, .99) if base_wake and wake else None
    emit([row(f"scale ({args.agents} agents, {args.seconds:.0f}s) p99 send-to-wake", ratio,
              "same sends, broker only (no harnesses)", "lower", agents=args.agents, seconds=args.seconds,
              sent=len(tr.sent), p99_wake_ms=round(pct(wake, .99) * 1e3, 1),
              base_p99_wake_ms=round(pct(base_wake, .99) * 1e3, 1), p99_turn_start_s=round(pct(turn, .99), 2),
              broker_cpu_pct=round(broker_cpu * 100, 1), harness_rss_mb=round(sum(rss_mb) / max(len(rss_mb), 1)),
              lost=len(missing) + len(unacked), not_started=len(not_started), started_twice=len(twice))])
    return 1 if missing or unacked else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--rate", type=float, default=0.5, help="messages per second, all agents together")
    p.add_argument("--drain", type=float, default=120.0)
    p.add_argument("--spawn-gap", type=float, default=0.05, help="seconds between harness spawns")
    sys.exit(asyncio.run(main(p.parse_args())))
