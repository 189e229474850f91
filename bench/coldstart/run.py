"""Cold start: `hive up` on an empty HIVE_HOME until every service answers.

    python bench/coldstart/run.py [--runs 2]

Times `hive up --nats-port 0` (embedded nats-server, broker, deployer,
dashboard, backup, and the `manager` harness the deployer spawns) from exec
until all of them answer `$SRV.PING` and the dashboard's /healthz says NATS is
connected. Baseline, in the same run: a bare nats-server plus one bare
nats.micro echo process (bench/broker's) until it answers `$SRV.PING`.
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

from runlib import ROOT, emit, row, spawn, stop

from hivewire.natsauth import resolve_credentials
from hivewire.natsd import nats_command
from hivewire.procs import free_port

WANT = {"hive-broker", "hive-deployer", "hive-dashboard", "hive-backup", "hive-harness"}


async def _quiet(exc: Exception) -> None:
    """Connection errors are expected while polling a server that is still starting."""


async def ping_names(url: str, home: Path | None = None) -> set[str]:
    # `hive up` runs NATS with auth on: ask as the operator it generated
    creds = resolve_credentials({"HIVE_HOME": str(home)}) if home is not None else None
    opts = creds.connect_options() if creds is not None else {}
    try:
        nc = await nats.connect(url, connect_timeout=0.5, max_reconnect_attempts=0, allow_reconnect=False,
                                error_cb=_quiet, **opts)
    except Exception:
        return set()
    names: set[str] = set()
    try:
        inbox = nc.new_inbox()

        async def on_msg(msg: object) -> None:
            try:
                names.add(json.loads(msg.data)["name"])  # type: ignore[attr-defined]
            except (ValueError, KeyError):  # e.g. an empty no-responders status
                pass

        sub = await nc.subscribe(inbox, cb=on_msg)
        await nc.publish("$SRV.PING", b"", reply=inbox)
        await asyncio.sleep(0.15)
        await sub.unsubscribe()
    finally:
        await nc.close()
    return names


async def hive_up_once(tmp: Path) -> tuple[float, dict[str, float]]:
    home = tmp / "home"
    port = free_port()
    env = {**__import__("os").environ, "HIVE_HOME": str(home), "HIVE_METRICS_ADDR": "127.0.0.1:0",
           "HIVE_DASHBOARD_ADDR": f"127.0.0.1:{port}", "HIVE_LOG_LEVEL": "warning"}
    env.pop("HIVE_NATS_URL", None)
    t0 = time.perf_counter()
    up = spawn([sys.executable, "-m", "hivewire.cli", "up", "--nats-port", "0"], env, tmp / "up.log")
    seen: dict[str, float] = {}
    try:
        url_file = home / "run" / "nats.url"
        deadline = time.monotonic() + 90
        url = ""
        dash_ok = False
        while time.monotonic() < deadline:
            if not url and url_file.exists():
                url = url_file.read_text().strip()
            if url:
                for n in await ping_names(url, home):
                    seen.setdefault(n, time.perf_counter() - t0)
            if not dash_ok:
                try:
                    async with httpx.AsyncClient(timeout=0.5) as c:
                        if (await c.get(f"http://127.0.0.1:{port}/healthz")).json().get("nats") == "connected":
                            dash_ok = True
                            seen.setdefault("dashboard /healthz", time.perf_counter() - t0)
                except (httpx.HTTPError, ValueError):
                    pass
            if WANT <= set(seen) and dash_ok:
                return time.perf_counter() - t0, seen
            await asyncio.sleep(0.05)
        raise RuntimeError(f"hive up: only {sorted(seen)} answered within 90 s (see {tmp / 'up.log'})")
    finally:
        stop(up, 15)


async def bare_once(tmp: Path) -> float:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    t0 = time.perf_counter()
    server = spawn(nats_command(tmp / "nats", port), {**__import__("os").environ}, tmp / "nats.log")
    echo = spawn([sys.executable, str(ROOT / "bench/broker/run.py"), "--echo-server", url],
                 {**__import__("os").environ}, tmp / "echo.log")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "bench-echo" in await ping_names(url):
                return time.perf_counter() - t0
            await asyncio.sleep(0.02)
        raise RuntimeError("bare echo did not answer")
    finally:
        stop(echo)
        stop(server)


async def main(args: argparse.Namespace) -> int:
    ours, base, detail = [], [], {}
    for i in range(args.runs):
        base.append(await bare_once(Path(tempfile.mkdtemp(prefix=f"hive-bench-cold-bare{i}-"))))
        t, detail = await hive_up_once(Path(tempfile.mkdtemp(prefix=f"hive-bench-cold{i}-")))
        ours.append(t)
    best, bbest = min(ours), min(base)
    print(f"hive up -> every service answering (best of {args.runs}): {best:.2f} s  (runs: "
          f"{', '.join(f'{x:.2f}' for x in ours)})")
    print("  first answer per service (last run): " + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(detail.items(),
                                                                                                   key=lambda x: x[1])))
    print(f"bare nats-server + one nats.micro echo process answering (best of {args.runs}): {bbest:.2f} s")
    print(f"ratio hive up / bare: {best / bbest:.1f}")
    emit([row("cold start (hive up -> all answering)", best / bbest, "nats-server + 1 bare micro process", "lower",
              seconds=round(best, 2), baseline_s=round(bbest, 2), per_service={k: round(v, 2) for k, v in
                                                                               detail.items()})])
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=2)
    sys.exit(asyncio.run(main(p.parse_args())))
