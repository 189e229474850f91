"""Run every benchmark and print one table of ratios against baselines
measured in the same run, plus absolute figures (this machine's only).

    bench/run [--quick] [--only broker,harness,...] [--scale-agents N] [--scale-seconds S] [--json rows.json]
    bench/run --markdown rows.json   # print the rows a --json run wrote as docs/benchmarks.md's table

Benchmarks (each also runs on its own: `python bench/<name>/run.py --help`):
broker (vs bare nats.micro echo), harness event ingest (vs raw sqlite inserts),
dashboard SSE fan-out (vs bare NATS subscribers), cost ledger ingest at 200
busy agents' turn rate (CPU per row vs a bare JetStream consumer), backup (vs `sqlite3 .backup`),
cold start (`hive up` vs a bare nats-server + micro process), sandbox (a
turn's start in bubblewrap vs the same command unconfined), harness_rss (an idle
agent's memory in the harness pool vs one harness process each), hosts (three
network namespaces: send-to-wake between hosts vs within one, idle memory per
host, lost-host report time; root, not in the default set), and scale (N real
harnesses with the real claude CLI against `hive sim-model`; broker-only
baseline). Every load goes to loopback only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run(name: str, argv: list[str], timeout: float) -> tuple[str, int]:
    print(f"==> {name}: {' '.join(argv)}", flush=True)
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, cwd=HERE.parent,
                           check=False)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:
        out, rc = f"{exc.stdout or ''}\nTIMEOUT after {timeout:.0f}s", 124
    for line in out.splitlines():
        if not line.startswith("BENCH_JSON") and "[info" not in line:
            print("    " + line)
    print(f"    ({time.perf_counter() - t:.0f}s, exit {rc})", flush=True)
    return out, rc


def parse_json(out: str) -> list[dict[str, Any]]:
    for line in reversed(out.splitlines()):
        if line.startswith("BENCH_JSON "):
            return list(json.loads(line[len("BENCH_JSON "):])["rows"])
    return []


def num(pattern: str, out: str) -> float | None:
    m = re.search(pattern, out)
    return float(m.group(1)) if m else None


def broker_rows(out: str) -> list[dict[str, Any]]:
    """bench/broker prints text; pick its figures out."""
    m = re.search(r"^broker\s+(\d+)\s+([\d.]+)\s+([\d.]+)", out, re.M)
    e = re.search(r"^echo\s+(\d+)\s+([\d.]+)\s+([\d.]+)", out, re.M)
    ratio = num(r"ratio broker/echo \(sends/s\): ([\d.]+)", out)
    wake = num(r"send-to-wake at \d+ msg/s: n=\d+ p50=[\d.]+ ms p99=([\d.]+) ms", out)
    missing = num(r"(\d+) missing from broker.sqlite", out)
    sync = re.search(r"synchronous=(\w+)", out)
    name = f"broker sends/s (32 agents, {sync.group(1) if sync else '?'} sync)"
    rows = [{"name": name, "ratio": ratio, "baseline": "bare nats.micro echo",
             "better": "higher", "figures": {"broker_sends_s": float(m.group(1)) if m else None,
                                             "echo_sends_s": float(e.group(1)) if e else None,
                                             "broker_p99_ms": float(m.group(3)) if m else None,
                                             "acked_missing": missing,
                                             "lean_vs_echo": num(r"ratio lean/echo \(sends/s\): ([\d.]+)", out)}}]
    after = num(r"send-to-wake at \d+ msg/s right after a broker flood: n=\d+ p50=[\d.]+ ms p99=([\d.]+) ms", out)
    rows.append({"name": "broker p99 send-to-wake @1000 msg/s", "ratio": None, "baseline": "(target < 5 ms)",
                 "better": "lower", "figures": {"p99_ms": wake, "p99_ms_right_after_a_flood": after}})
    return rows


def backup_rows(out: str) -> list[dict[str, Any]]:
    ratio = num(r"throughput ratio \(hive copy under writer / [^)]*\): ([\d.]+)", out)
    stall = num(r"writer longest stall during hive-backup copy: ([\d.]+) ms", out)
    mbs = num(r"hive-backup copy, writer running[^:]*:\s+[\d.]+s = ([\d.]+) MB/s", out)
    size = num(r"database: ([\d.]+) MB", out)
    return [{"name": "backup online snapshot throughput", "ratio": ratio, "baseline": "sqlite3 .backup, same file",
             "better": "higher", "figures": {"db_mb": size, "mb_s": mbs, "writer_max_stall_ms": stall}}]


def fmt(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} {fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows of a `--json` run as a Markdown table (docs/benchmarks.md's current figures)."""
    out = ["| benchmark | ratio | better | baseline (same run) | absolute figures (this machine only) |",
           "| --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = "n/a" if r.get("ratio") is None else f"**{r['ratio']:.2f}**"
        figures = ", ".join(f"{k} {fmt(v)}" for k, v in (r.get("figures") or {}).items())
        cells = [str(r["name"]), ratio, str(r.get("better", "")), str(r.get("baseline", "")), figures]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="broker,harness,dashboard,ledger,backup,coldstart,sandbox,harness_rss,scale",
                    help="comma-separated; also `hosts` (three network namespaces, needs root), not in the default")
    ap.add_argument("--quick", action="store_true", help="smaller everything (a smoke run, ~3 min)")
    ap.add_argument("--scale-agents", type=int, default=None, help="default 40 (200 with --full)")
    ap.add_argument("--scale-seconds", type=float, default=None, help="default 60 (300 with --full)")
    ap.add_argument("--scale-rate", type=float, default=0.5)
    ap.add_argument("--backup-mb", type=int, default=None, help="default 256 (1024 with --full)")
    ap.add_argument("--full", action="store_true", help="the issue's sizes: 200 agents x 5 min, 1 GiB backup")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--markdown", type=Path, metavar="ROWS_JSON",
                    help="run nothing: print the rows a --json run wrote as a Markdown table")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(json.loads(a.markdown.read_text())))
        return 0
    only = {x.strip() for x in a.only.split(",")}
    q = a.quick
    agents = a.scale_agents or (200 if a.full else 8 if q else 40)
    seconds = a.scale_seconds or (300 if a.full else 20 if q else 60)
    backup_mb = a.backup_mb or (1024 if a.full else 64 if q else 256)
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    plan: list[tuple[str, list[str], float, Any]] = [
        ("broker", ["bench/broker/run.py", "--seconds", "2" if q else "5", "--wake-seconds", "2" if q else "5"], 300,
         broker_rows),
        ("harness", ["bench/harness/run.py", "--events", "5000" if q else "50000"], 900, parse_json),
        ("dashboard", ["bench/dashboard/run.py", "--clients", "100", "--events", "50" if q else "200"], 300,
         parse_json),
        ("ledger", ["bench/ledger/run.py", "--seconds", "5" if q else "20"], 300, parse_json),
        ("backup", ["bench/backup/run.py", "--size-mb", str(backup_mb)], 1800, backup_rows),
        ("coldstart", ["bench/coldstart/run.py", "--runs", "1" if q else "2"], 600, parse_json),
        ("sandbox", ["bench/sandbox/run.py", "--runs", "10" if q else "40"], 300, parse_json),
        ("harness_rss", ["bench/harness_rss/run.py", "--agents", "1,10" if q else "1,10,50"], 900, parse_json),
        ("hosts", ["bench/hosts/run.py", "--agents-per-host", "3" if q else "5", "--messages", "6" if q else "20"],
         900, parse_json),
        ("scale", ["bench/scale/run.py", "--agents", str(agents), "--seconds", str(seconds), "--rate",
                   str(a.scale_rate), "--drain", "60" if q else "120"], seconds * 2 + 600 + agents * 3, parse_json),
    ]
    for name, argv, timeout, parse in plan:
        if name not in only:
            continue
        out, rc = run(name, argv, timeout)
        got = parse(out)
        if rc != 0 or not got:
            failures.append(f"{name} (exit {rc})")
        rows += got
    print()
    print(f"Hive benchmarks, {time.strftime('%Y-%m-%d %H:%M')}; THIS MACHINE: {os.cpu_count()} cores, "
          f"{platform.machine()}, Python {platform.python_version()}, load avg {os.getloadavg()[0]:.1f} at the end")
    print(f"{'benchmark':48} {'ratio':>7}  {'better':6}  baseline (same run)")
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['name']:48} {ratio:>7}  {r['better']:6}  {r['baseline']}")
    print()
    print("absolute figures (this machine only):")
    for r in rows:
        print(f"  {r['name']}: {fmt(r['figures'])}")
    if failures:
        print("FAILED: " + ", ".join(failures))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
