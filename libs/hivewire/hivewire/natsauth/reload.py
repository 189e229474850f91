"""The running nats-server: reload its config (SIGHUP through its pid file), and check a
config with `nats-server -t`."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from hivewire.natsauth.paths import pid_path


def reload_server(home: Path, pid_file: Path | None = None) -> bool:
    """SIGHUP the nats-server whose pid file is given (default run/nats.pid).

    False when no server runs (the next start reads the new config anyway).
    Where nats-server runs in another pid namespace, use
    `nats-server --signal reload=<pid file>` there instead.
    """
    p = pid_file or pid_path(home)
    try:
        pid = int(p.read_text().strip())
        if not _is_nats_server(pid):  # a stale pid file (kill -9, reboot) names someone else now
            return False
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True


def _is_nats_server(pid: int) -> bool:
    """True unless /proc shows that `pid` is not a nats-server (no /proc: trust the pid file)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    try:
        argv0 = (proc / str(pid) / "cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return "nats-server" in Path(argv0.decode(errors="replace")).name


def check_config(config: Path) -> str:
    """`nats-server -t -c config`: raises ValueError with its output if invalid."""
    from hivewire.natsd import nats_server_binary

    r = subprocess.run([nats_server_binary(), "-t", "-c", str(config)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise ValueError(f"nats-server rejected {config}: {r.stdout}{r.stderr}")
    return r.stdout + r.stderr
