"""Sandbox start: what the bubblewrap sandbox adds to the start of an agent's turn.

    python bench/sandbox/run.py [--runs 40]

Times, from exec to exit, the smallest turn-shaped command in two ways, in
alternation: unconfined (`node -e 0` with the agent's environment) and the way
the harness starts a turn (`CliConfig.command`: bwrap with every namespace,
the curated filesystem, the cgroup join, and `sandbox_init.js` starting its
proxy relay before it runs `node -e 0`). The added time is sandboxed minus
plain at p50 and p95; the target is under 100 ms at p50. Nothing talks to the
network: the relay listens on the sandbox's own loopback only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runlib import emit, row

from hive_harness import sandbox as sb
from hive_harness.agent_cli import CliConfig
from hive_harness.limits import Limits


def timed(argv: list[str], env: dict[str, str], cwd: Path, preexec: object = None) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   preexec_fn=preexec)  # type: ignore[arg-type]
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="starts of each kind (alternating)")
    args = ap.parse_args()
    node = sb.node_binary()
    root = Path(tempfile.mkdtemp(prefix="hive-bench-sandbox-"))
    try:
        state, creds, run_dir = root / "state", root / "creds", root / "run"
        for d in (state, creds):
            d.mkdir()
        sb.write_run_files(run_dir, "bench")
        os.environ["HIVE_AGENT_CMD"] = node
        limits = Limits.from_env()
        limited = limits.setup("bench", root.name)
        cfg = CliConfig("bench", state, creds, run_dir, sb.from_env({"HIVE_SANDBOX": "bwrap"}), limits=limits)
        boxed, boxed_env = cfg.command([node, "-e", "0"])
        plain_env = {**cfg.env(), "HOME": str(state), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        plain: list[float] = []
        sandboxed: list[float] = []
        for _ in range(args.runs):
            plain.append(timed([node, "-e", "0"], plain_env, state))
            sandboxed.append(timed(boxed, boxed_env, state, limits.preexec()))
    finally:
        limits.teardown()
        shutil.rmtree(root, ignore_errors=True)
    p50p, p50s = statistics.median(plain), statistics.median(sandboxed)
    q = statistics.quantiles
    p95p, p95s = q(plain, n=20)[18], q(sandboxed, n=20)[18]
    added50, added95 = p50s - p50p, p95s - p95p
    print(f"plain node -e 0      p50 {p50p:7.1f} ms  p95 {p95p:7.1f} ms")
    print(f"sandboxed (bwrap)    p50 {p50s:7.1f} ms  p95 {p95s:7.1f} ms  (cgroup limits: {'on' if limited else 'off'})")
    print(f"added by the sandbox p50 {added50:7.1f} ms  p95 {added95:7.1f} ms  (target: p50 < 100 ms)")
    emit([row("sandbox turn start", p50s / p50p, "the same command unconfined", "lower",
              added_p50_ms=round(added50, 1), added_p95_ms=round(added95, 1), plain_p50_ms=round(p50p, 1),
              sandboxed_p50_ms=round(p50s, 1), runs=args.runs, limits=limited)])


if __name__ == "__main__":
    main()
