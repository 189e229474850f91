"""Three "machines" on one: network namespaces joined by veth pairs (issue 26 tests).

`Lan` makes `<prefix>-h1|h2|h3`, links h1 (the core host) to h2 and h3 with
one veth pair each (10.226.12.0/24 and 10.226.13.0/24, assigned inside the
namespaces only: nothing is added to the test's own network namespace), and
runs processes inside them with `ip netns exec`. Teardown stops every process
it started (by process group, then whatever is still inside its namespaces,
which only this fixture's processes can be) and deletes the namespaces, which
removes the veths.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from hivewire.procs import die_with_parent, stop_process

HUB_ADDR = {"h2": "10.226.12.1", "h3": "10.226.13.1"}  # the core host as h2 / h3 reach it
ADDR = {"h2": "10.226.12.2", "h3": "10.226.13.3"}


def available() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "needs iproute2"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class Lan:
    def __init__(self, prefix: str, log_dir: Path) -> None:
        self.ns = {h: f"{prefix}-{h}" for h in ("h1", "h2", "h3")}
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def up(self) -> Lan:
        for ns in self.ns.values():
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for peer, hub_if, peer_if in (("h2", "v12", "v21"), ("h3", "v13", "v31")):
            _ip("link", "add", hub_if, "netns", self.ns["h1"], "type", "veth", "peer", "name", peer_if,
                "netns", self.ns[peer])
            _ip("-n", self.ns["h1"], "addr", "add", f"{HUB_ADDR[peer]}/24", "dev", hub_if)
            _ip("-n", self.ns[peer], "addr", "add", f"{ADDR[peer]}/24", "dev", peer_if)
            _ip("-n", self.ns["h1"], "link", "set", hub_if, "up")
            _ip("-n", self.ns[peer], "link", "set", peer_if, "up")
        return self

    def popen(self, host: str, argv: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{log}.log", "ab") as out:
            p = subprocess.Popen(["ip", "netns", "exec", self.ns[host], *argv], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                 preexec_fn=die_with_parent)
        self.procs.append(p)
        return p

    def run(self, host: str, argv: list[str], env: dict[str, str], timeout: float = 60.0) -> str:
        r = subprocess.run(["ip", "netns", "exec", self.ns[host], *argv], env=env, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"{argv} in {host} exited {r.returncode}: {r.stdout}{r.stderr}")
        return r.stdout

    def pids(self, host: str) -> list[int]:
        r = subprocess.run(["ip", "netns", "pids", self.ns[host]], capture_output=True, text=True, timeout=10)
        return [int(p) for p in r.stdout.split()]

    def kill_host(self, host: str) -> list[int]:
        """The machine dies: SIGKILL every process inside its namespace (all started by this fixture)."""
        killed = []
        for _ in range(5):
            pids = self.pids(host)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        for p in self.procs:
            if p.poll() is None and p.pid in killed:
                p.wait(5)
        return killed

    def down(self) -> None:
        for p in reversed(self.procs):
            stop_process(p, timeout=8.0)
        for host in self.ns:
            self.kill_host(host)  # anything a stopped process left behind inside our namespaces
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
