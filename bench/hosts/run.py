"""Many hosts (issue 26): agents across three network namespaces on this machine.

    python bench/hosts/run.py [--agents-per-host 5] [--messages 40] [--gap 0.5]   (root: ip netns)

h1 is the core host (nats-server with auth, broker, deployer), h2 and h3 join
and run `hive-agenthost` (each host's harnesses in one harness pool, the
default), each host with its own Messages API simulator. `--agents-per-host`
agents are spawned on each host (`--agents-per-host 100`: 300 agents).
`--messages` sends go to the core host's agents and as many to h3's (round
robin over each side's agents, `--gap` seconds apart); each one wakes a
running agent whose harness runs a turn of the real agent CLI. Reported:

- p50/p99 send-to-wake for agents on the core host vs agents on h3 (the
  broker's `hive.agent.<a>.wake` as seen by a subscriber *on that host*,
  from the operator's send request on h1; one clock: the same machine); the
  ratio is between-hosts p99 / within-one-host p99;
- p50/p99 send-to-turn-start (the harness's `turn_start` LiveEvent for that
  message, seen on the agent's host), the same ratio, and how long the real
  CLI turns took on each side;
- PSS per idle agent on each host (its harness pool's smaps_rollup / agents);
- how long after h3's processes are SIGKILLed the deployer reports it lost
  (its log line's time) and `hive hosts` shows it (`HIVE_HOST_LOST_S` = 10).

Traffic stays inside the namespaces this run makes (veth pairs, addresses
only inside them); every process is stopped by process group and the
namespaces are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from runlib import emit, pct, row  # noqa: E402

from hivewire import natsauth  # noqa: E402
from tests.hosts.netns import HUB_ADDR, Lan, available  # noqa: E402
from tests.hosts.test_move_partition import start_hive  # noqa: E402

SENDER = r'''
import asyncio, json, sys, time
import nats
from hivewire import natsauth
async def main():
    url, creds, targets = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    n, gap = int(sys.argv[4]), float(sys.argv[5])
    c = natsauth.resolve_credentials({"HIVE_NATS_CREDS": creds})
    nc = await nats.connect(url, **c.connect_options())
    sent = {}
    for i in range(n):
        for side, agents in targets.items():
            t = time.time()
            r = await nc.request("hive.broker.operator.send",
                                 json.dumps({"to": agents[i % len(agents)], "body": f"ping {i}"}).encode(), timeout=10)
            sent[str(json.loads(r.data)["id"])] = [side, t]
            await asyncio.sleep(gap)
    await nc.close()
    print(json.dumps(sent))
asyncio.run(main())
'''

PROBE = r'''
import asyncio, json, sys, time
import nats
from hivewire import natsauth
async def main():
    url, creds, agents, out = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
    c = natsauth.resolve_credentials({"HIVE_NATS_CREDS": creds})
    nc = await nats.connect(url, **c.connect_options())
    seen = []
    async def cb(msg):
        now, d = time.time(), json.loads(msg.data)
        agent = msg.subject.split(".")[2]
        if msg.subject.endswith(".wake"):
            seen.append(("wake", agent, d.get("ref"), now))
        elif d.get("kind") in ("turn_start", "turn_end"):
            seen.append((d["kind"], agent, d.get("payload", {}).get("message_id"), now))
    for a in agents:
        await nc.subscribe(f"hive.agent.{a}.wake", cb=cb)
        await nc.subscribe(f"hive.agent.{a}.events", cb=cb)
    await nc.flush()
    open(out + ".ready", "w").close()
    while True:
        await asyncio.sleep(0.5)
        with open(out + ".part", "w") as f:
            json.dump(seen, f)
        import os; os.replace(out + ".part", out)
asyncio.run(main())
'''


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pool_pids(lan: Lan, host: str) -> list[int]:
    out = []
    for pid in lan.pids(host):
        try:
            if b"hive_harness.pool" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents-per-host", type=int, default=5)
    ap.add_argument("--messages", type=int, default=40, help="per side (core, h3); each one is a real CLI turn")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between two sends")
    ap.add_argument("--settle", type=float, default=300, help="seconds to wait for the last turns to end")
    a = ap.parse_args()
    why = available()
    if why:
        print(f"skipped: {why}")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="hive-bench-hosts-"))
    lan = Lan(f"hivebh-{os.getpid()}", tmp / "logs").up()
    try:
        return run(lan, tmp, a)
    finally:
        lan.down()


def run(lan: Lan, tmp: Path, a: argparse.Namespace) -> int:
    hub, op, hive = start_hive(lan, tmp)
    n = a.agents_per_host
    names = {h: [f"{h}a{i}" for i in range(n)] for h in ("h1", "h2", "h3")}
    t0 = time.perf_counter()
    for h, agents in names.items():
        for name in agents:
            hive("agents", "spawn", name, "--host", h)
    spawn_s = time.perf_counter() - t0
    print(f"spawned {3 * n} agents ({n} per host) in {spawn_s:.1f}s", flush=True)
    time.sleep(5)  # idle
    pss = {}
    for h in ("h1", "h2", "h3"):
        pids = pool_pids(lan, h)
        pss[h] = round(sum(pss_kb(p) for p in pids) / 1024 / n, 2)
    print(f"PSS per idle agent (harness pool / agents): {pss} MB", flush=True)

    # send-to-wake: a subscriber on h1 for the core's agents, one on h3 for h3's
    creds = str(natsauth.creds_path(hub, natsauth.OPERATOR_USER))
    probes = {}
    for h, url in (("h1", "nats://127.0.0.1:4222"), ("h3", f"nats://{HUB_ADDR['h3']}:4222")):
        out = tmp / f"wakes-{h}.json"
        probes[h] = out
        lan.popen(h, [sys.executable, "-c", PROBE, url, creds, ",".join(names[h]), str(out)], op, f"probe-{h}")
    deadline = time.monotonic() + 30
    while not all(Path(str(p) + ".ready").exists() for p in probes.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    # every message wakes a running agent: the real CLI runs a turn on the host's simulator
    out = lan.run("h1", [sys.executable, "-c", SENDER, "nats://127.0.0.1:4222", creds,
                         json.dumps({h: names[h] for h in ("h1", "h3")}), str(a.messages), str(a.gap)],
                  op, timeout=600 + a.messages * 4 * a.gap)
    sent = {k: (v[0], float(v[1])) for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    lat, turn_lat, cli_s = measure(probes, sent, settle_s=a.settle)
    for h in ("h1", "h3"):
        print(f"{h}: send-to-wake n={len(lat[h])} p50={pct(lat[h], .5) * 1e3:.2f} ms "
              f"p99={pct(lat[h], .99) * 1e3:.2f} ms; send-to-turn-start n={len(turn_lat[h])} "
              f"p50={pct(turn_lat[h], .5) * 1e3:.1f} ms p99={pct(turn_lat[h], .99) * 1e3:.1f} ms; "
              f"real CLI turn p50={pct(cli_s[h], .5):.2f} s (n={len(cli_s[h])})", flush=True)

    # a lost host
    t_kill = time.time()
    lan.kill_host("h3")
    seen_lost = None
    while time.time() - t_kill < 40:
        hosts = {x["name"]: x for x in hive("hosts")["hosts"]}
        if hosts["h3"]["state"] == "lost":
            seen_lost = time.time() - t_kill
            break
        time.sleep(0.2)
    logged = None
    for line in (tmp / "logs/deployer.log").read_text().splitlines():
        if '"host_lost"' in line and '"h3"' in line:
            from datetime import datetime
            ts = json.loads(line)["timestamp"]
            logged = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() - t_kill
    print(f"h3 killed: the deployer reported it lost after {logged or float('nan'):.1f}s (log), "
          f"`hive hosts` showed it after {seen_lost or float('nan'):.1f}s", flush=True)
    def ms(v: float) -> float:
        return round(v * 1e3, 2)

    p99 = {h: pct(v, .99) for h, v in lat.items()}
    t99 = {h: pct(v, .99) for h, v in turn_lat.items()}
    emit([row("send-to-wake p99, agent host vs core host (veths)", round(p99["h3"] / p99["h1"], 2),
              "agents on the core host", "lower",
              p99_core_ms=ms(p99["h1"]), p99_h3_ms=ms(p99["h3"]), p50_core_ms=ms(pct(lat["h1"], .5)),
              p50_h3_ms=ms(pct(lat["h3"], .5)), n_core=len(lat["h1"]), n_h3=len(lat["h3"]), agents=3 * n),
          row("send-to-turn-start p99 (real CLI turns), agent host vs core host", round(t99["h3"] / t99["h1"], 2),
              "agents on the core host", "lower",
              p99_core_ms=ms(t99["h1"]), p99_h3_ms=ms(t99["h3"]), p50_core_ms=ms(pct(turn_lat["h1"], .5)),
              p50_h3_ms=ms(pct(turn_lat["h3"], .5)), n_core=len(turn_lat["h1"]), n_h3=len(turn_lat["h3"]),
              cli_turn_p50_s_core=round(pct(cli_s["h1"], .5), 2), cli_turn_p50_s_h3=round(pct(cli_s["h3"], .5), 2)),
          row("idle agent PSS per host (harness pool)", None, "(target <= 30 MB)", "lower",
              **{f"{h}_mb": v for h, v in pss.items()}, agents_per_host=n),
          row("lost host reported", None, "(HIVE_HOST_LOST_S = 10 s)", "lower",
              deployer_log_s=round(logged, 1) if logged else None,
              hive_hosts_s=round(seen_lost, 1) if seen_lost else None)])
    complete = all(len(v) == a.messages for v in (*lat.values(), *turn_lat.values()))
    if not complete:
        print("some sends were not seen as a wake and a turn on their host (see the counts above)", flush=True)
    return 0 if complete and seen_lost else 1


def measure(probes: dict[str, Path], sent: dict[str, tuple[str, float]], settle_s: float
            ) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Send-to-wake and send-to-turn-start per side, and each woken turn's length (turn_start to the
    agent's next turn_end), once every send's turn has ended or `settle_s` passed."""
    deadline = time.monotonic() + settle_s
    while True:
        seen = {h: json.loads(p.read_text()) if p.exists() else [] for h, p in probes.items()}
        ended = sum(1 for v in seen.values() for kind, *_ in v if kind == "turn_end")
        if ended >= len(sent) or time.monotonic() > deadline:
            break
        time.sleep(1)
    lat: dict[str, list[float]] = {}
    turn_lat: dict[str, list[float]] = {}
    cli_s: dict[str, list[float]] = {}
    for h, rows_ in seen.items():
        wakes = {str(ref): ts for kind, _, ref, ts in rows_ if kind == "wake"}
        starts = {str(mid): (agent, ts) for kind, agent, mid, ts in rows_ if kind == "turn_start" and mid}
        ends: dict[str, list[float]] = {}
        for kind, agent, _, ts in rows_:
            if kind == "turn_end":
                ends.setdefault(agent, []).append(ts)
        mine = [(mid, ts) for mid, (hh, ts) in sent.items() if hh == h]
        lat[h] = [wakes[mid] - ts for mid, ts in mine if mid in wakes]
        turn_lat[h] = [starts[mid][1] - ts for mid, ts in mine if mid in starts]
        cli_s[h] = []
        for mid, _ in mine:
            if mid in starts:
                agent, t0 = starts[mid]
                after = [t for t in ends.get(agent, []) if t >= t0]
                if after:
                    cli_s[h].append(min(after) - t0)
    return lat, turn_lat, cli_s


if __name__ == "__main__":
    sys.exit(main())
