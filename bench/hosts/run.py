"""Many hosts (issue 26): agents across three network namespaces on this machine.

    python bench/hosts/run.py [--agents-per-host 5] [--messages 200]   (root: ip netns)

h1 is the core host (nats-server with auth, broker, deployer), h2 and h3 join
and run `hive-agenthost` (each host's harnesses in one harness pool, the
default). `--agents-per-host` idle agents are spawned on each host. Reported:

- p50/p99 send-to-wake for agents on the core host vs agents on h3 (the
  broker's `hive.agent.<a>.wake` as seen by a subscriber *on that host*,
  from the operator's send request on h1; one clock: the same machine); the
  ratio is between-hosts p99 / within-one-host p99. The agents are stopped
  for this part (each message would start a real CLI turn; the broker
  publishes the wake at send time either way), so it is the hive's path;
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
    url, creds, targets, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    c = natsauth.resolve_credentials({"HIVE_NATS_CREDS": creds})
    nc = await nats.connect(url, **c.connect_options())
    sent = {}
    for i in range(n):
        for side, agents in targets.items():
            t = time.time()
            r = await nc.request("hive.broker.operator.send",
                                 json.dumps({"to": agents[i % len(agents)], "body": f"ping {i}"}).encode(), timeout=10)
            sent[str(json.loads(r.data)["id"])] = [side, t]
            await asyncio.sleep(0.02)
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
        seen.append((msg.subject.split(".")[2], json.loads(msg.data).get("ref"), time.time()))
    for a in agents:
        await nc.subscribe(f"hive.agent.{a}.wake", cb=cb)
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
    ap.add_argument("--messages", type=int, default=200, help="per side (core, h3)")
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
    # the agents stop first: each message would otherwise start a real CLI turn (the wake is published
    # at send time either way, which is what is measured)
    for h in ("h1", "h3"):
        for name in names[h]:
            hive("agents", "stop", name)
    out = lan.run("h1", [sys.executable, "-c", SENDER, "nats://127.0.0.1:4222", creds,
                         json.dumps({h: names[h] for h in ("h1", "h3")}), str(a.messages)], op, timeout=600)
    sent = {k: (v[0], float(v[1])) for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    time.sleep(3)
    lat: dict[str, list[float]] = {}
    for h, p in probes.items():
        seen = {ref: ts for _, ref, ts in json.loads(p.read_text())}
        lat[h] = [seen[mid] - ts for mid, (hh, ts) in sent.items() if hh == h and mid in seen]
    for h in ("h1", "h3"):
        print(f"send-to-wake on {h}: n={len(lat[h])} p50={pct(lat[h], .5) * 1e3:.2f} ms "
              f"p99={pct(lat[h], .99) * 1e3:.2f} ms", flush=True)

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
    p99 = {h: pct(v, .99) for h, v in lat.items()}
    ratio = round(p99["h3"] / p99["h1"], 2) if p99.get("h1") else None
    emit([row("send-to-wake p99, agent host vs core host (veths)", ratio, "agents on the core host", "lower",
              p99_core_ms=round(p99["h1"] * 1e3, 2), p99_h3_ms=round(p99["h3"] * 1e3, 2),
              p50_core_ms=round(pct(lat["h1"], .5) * 1e3, 2), p50_h3_ms=round(pct(lat["h3"], .5) * 1e3, 2),
              n_core=len(lat["h1"]), n_h3=len(lat["h3"])),
          row("idle agent PSS per host (harness pool)", None, "(target <= 30 MB)", "lower",
              **{f"{h}_mb": v for h, v in pss.items()}, agents_per_host=n),
          row("lost host reported", None, "(HIVE_HOST_LOST_S = 10 s)", "lower",
              deployer_log_s=round(logged, 1) if logged else None,
              hive_hosts_s=round(seen_lost, 1) if seen_lost else None)])
    return 0 if lat["h1"] and lat["h3"] and seen_lost else 1


if __name__ == "__main__":
    sys.exit(main())
