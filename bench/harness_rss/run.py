"""Memory of an idle agent: the harness pool vs one harness process per agent.

    python bench/harness_rss/run.py [--agents 1,10,50] [--settle 4]

For each N, in the same run and against the same real nats-server and real
broker (agents registered), N idle agents are started two ways:

- baseline: N `python -m hive_harness` processes (one per agent, as before);
- pool: one `python -m hive_harness.pool` process hosting N harnesses, driven
  by the deployer's own `hive_deployer.pool.HarnessPool`.

Both with the bwrap sandbox configured (an idle agent runs no CLI: nothing is
in a sandbox between turns) and the agents' own stores, MCP sockets and egress
proxies. Once every agent's presence heartbeat is seen and `--settle` seconds
have passed, memory is read from `/proc/<pid>/smaps_rollup` of every process
the mode started, and of their children (none while idle): **PSS** (shared
pages divided among the processes mapping them: the honest share of each) and
USS (private pages only). Per agent = total / N. Also reported: nats-server's
RSS growth per connected agent (the same in both modes: one connection each).
The ratio is pool PSS per agent / baseline PSS per agent at the largest N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runlib import emit, python_m, row, rss_kb, service_env, spawn, stop

from hive_deployer.pool import HarnessPool
from hive_deployer.runtimes import BwrapRuntime, Launch, ProcessRuntime
from hivewire import subjects
from hivewire.natsd import NatsServer


def smaps(pid: int) -> tuple[int, int]:
    """(PSS, USS) in kB of one process."""
    pss = uss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            k, _, v = line.partition(":")
            if k == "Pss":
                pss = int(v.split()[0])
            elif k in ("Private_Clean", "Private_Dirty"):
                uss += int(v.split()[0])
    except OSError:
        pass
    return pss, uss


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except OSError:
            pass
    return out


def measure(pids: list[int]) -> tuple[int, int, int]:
    all_pids = sorted({p for pid in pids for p in tree(pid)})
    pss = uss = 0
    for p in all_pids:
        a, b = smaps(p)
        pss, uss = pss + a, uss + b
    return pss, uss, len(all_pids)


class Seen:
    def __init__(self) -> None:
        self.agents: set[str] = set()

    async def cb(self, msg: Any) -> None:
        if json.loads(msg.data).get("state") != "offline":
            self.agents.add(subjects.token(msg.subject, 2))

    async def wait(self, names: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(names) <= self.agents:
                return True
            await asyncio.sleep(0.2)
        return False


def agent_env(home: Path, url: str, name: str) -> dict[str, str]:
    state = home / "agents" / name / "state"
    return {"HIVE_AGENT": name, "HIVE_HOME": str(home), "HIVE_NATS_URL": url, "HIVE_NATS_CREDS": "none",
            "HIVE_EVENTS_DB": str(state / "events.sqlite"), "HIVE_MODEL_FILE": str(state / "model"),
            "CLAUDE_CONFIG_DIR": str(home / "agents" / name / "creds"), "HIVE_AGENT_CONFIG_ENV": "{}"}


async def run_mode(mode: str, n: int, home: Path, url: str, nats_pid: int, settle: float, runtime: Any,
                   logs: Path, seen: Seen) -> dict[str, Any]:
    names = [f"{mode[0]}{n}x{i}" for i in range(n)]
    nats_before = rss_kb(nats_pid)
    base = {**service_env(home, url), **runtime.sandbox_env(), "HIVE_LOG_LEVEL": "warning",
            "HIVE_AGENT_CMD": "claude"}
    t0 = time.perf_counter()
    procs: list[Any] = []
    pool: HarnessPool | None = None
    try:
        if mode == "baseline":
            for a in names:
                procs.append(spawn(python_m("hive_harness"), {**base, **agent_env(home, url, a)}, logs / f"{a}.log"))
            pids = [p.pid for p in procs]
        else:
            pool = HarnessPool(runtime, logs)
            for a in names:
                env = agent_env(home, url, a)
                await pool.start(Launch(a, [], env, home / "agents" / a / "state"))
            assert pool.pid is not None
            pids = [pool.pid]
        ok = await seen.wait(names, timeout=60 + 4 * n)
        up_s = time.perf_counter() - t0
        await asyncio.sleep(settle)
        pss, uss, nproc = measure(pids)
        nats_after = rss_kb(nats_pid)
    finally:
        if pool is not None:
            for a in names:
                m = pool.members.get(a)
                if m is not None:
                    await pool.stop(a, m, 8.0, False)
            await pool.close()
        for p in procs:
            stop(p)
    res = {"mode": mode, "agents": n, "all_up": ok, "up_s": round(up_s, 1), "processes": nproc,
           "pss_mb": round(pss / 1024, 1), "uss_mb": round(uss / 1024, 1),
           "pss_per_agent_mb": round(pss / 1024 / n, 2), "uss_per_agent_mb": round(uss / 1024 / n, 2),
           "nats_rss_per_agent_kb": round((nats_after - nats_before) / n, 1)}
    print(f"{mode:9} N={n:3}  up in {up_s:5.1f}s  processes {nproc:3}  PSS {pss / 1024:7.1f} MB "
          f"({pss / 1024 / n:6.2f}/agent)  USS {uss / 1024:7.1f} MB ({uss / 1024 / n:6.2f}/agent)  "
          f"nats-server +{res['nats_rss_per_agent_kb']} kB/agent{'' if ok else '  NOT ALL UP'}", flush=True)
    return res


async def amain(a: argparse.Namespace) -> int:
    ns = [int(x) for x in a.agents.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="hive-bench-rss-"))
    home = tmp / "home"
    home.mkdir(mode=0o700)
    server = NatsServer(tmp / "nats").start()
    broker = None
    results: list[dict[str, Any]] = []
    runtime: Any = BwrapRuntime(shutil.which("bwrap") or "bwrap")
    if runtime.check() is not None:
        print(f"bwrap cannot confine here ({runtime.check()}); measuring with the process runtime's env")
        runtime = ProcessRuntime(allow_unconfined=True)
    try:
        broker = spawn(python_m("hive_broker"), service_env(home, server.url, HIVE_LOG_LEVEL="warning"),
                       tmp / "logs/broker.log")
        nc = await nats.connect(server.url)
        seen = Seen()
        await nc.subscribe("hive.agent.*.presence", cb=seen.cb)
        all_names = [f"{m[0]}{n}x{i}" for n in ns for m in ("baseline", "pool") for i in range(n)]
        for name in all_names:  # every agent known to the broker: their idle recv polls are ordinary
            for _ in range(100):
                try:
                    await nc.request(subjects.broker_registry("upsert"), json.dumps({"name": name}).encode(),
                                     timeout=2)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
        for n in ns:
            for mode in ("baseline", "pool"):
                results.append(await run_mode(mode, n, home, server.url, server.proc.pid, a.settle, runtime,
                                              tmp / "logs", seen))
        await nc.close()
    finally:
        stop(broker)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    by = {(r["mode"], r["agents"]): r for r in results}
    for n in ns:
        b, p = by[("baseline", n)], by[("pool", n)]
        rows.append(row(f"idle agent PSS, pool vs process each (N={n})",
                        round(p["pss_per_agent_mb"] / b["pss_per_agent_mb"], 3) if b["pss_per_agent_mb"] else None,
                        "one harness process per agent", "lower",
                        pool_mb_per_agent=p["pss_per_agent_mb"], baseline_mb_per_agent=b["pss_per_agent_mb"],
                        pool_uss_mb_per_agent=p["uss_per_agent_mb"],
                        baseline_uss_mb_per_agent=b["uss_per_agent_mb"],
                        nats_kb_per_agent=p["nats_rss_per_agent_kb"], all_up=b["all_up"] and p["all_up"]))
    emit(rows, results=results)
    return 0 if all(r["all_up"] for r in results) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", default="1,10,50", help="comma-separated agent counts")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds idle after every agent is up")
    return asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
