"""Chaos: a 3-node NATS cluster on loopback (distinct ports) loses the node the
broker is connected to, mid-traffic; nothing acknowledged is lost.

The broker and the test's agents get every node in HIVE_NATS_URL
(comma-separated); the killed node is found through the nodes' /connz.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hivewire.nats_transport import NatsTransport
from hivewire.natsd import nats_server_binary
from hivewire.procs import die_with_parent, free_port, stop_process, wait_port
from hivewire.service import HiveClient
from hivewire.wire import broker as w
from hivewire.wire import ops

from .test_kill_everything import Traffic, _true, integrity_errors
from support.procs import ServiceProcess, wait_for

pytestmark = pytest.mark.chaos


class Node:
    def __init__(self, tmp: Path, idx: int, routes: list[int], cport: int) -> None:
        self.port, self.http = free_port(), free_port()
        self.conf = tmp / f"node{idx}.conf"
        peers = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes if p != cport)
        self.conf.write_text(
            f"server_name: n{idx}\nlisten: 127.0.0.1:{self.port}\nhttp: 127.0.0.1:{self.http}\n"
            f"cluster {{ name: hive-chaos\n listen: 127.0.0.1:{cport}\n routes: [{peers}] }}\n"
        )
        self.log = tmp / f"node{idx}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([nats_server_binary(), "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
        assert wait_port("127.0.0.1", self.port, 10)

    def connection_names(self) -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/connz", timeout=2) as r:
            return [c.get("name", "") for c in json.load(r).get("connections", [])]

    def routes(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/routez", timeout=2) as r:
            return int(json.load(r).get("num_routes", 0))


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    cports = [free_port() for _ in range(3)]
    nodes = [Node(tmp_path, i, cports, cports[i]) for i in range(3)]
    for n in nodes:
        n.start()
    yield nodes
    for n in nodes:
        if n.proc is not None:
            stop_process(n.proc)


async def test_cluster_loses_the_brokers_node_mid_traffic(cluster: list[Node], tmp_path: Path) -> None:
    await wait_for(lambda: _true(all(n.routes() >= 2 for n in cluster)), timeout=20)
    urls = ",".join(n.url for n in cluster)
    home = tmp_path / "hive"
    home.mkdir()
    broker = ServiceProcess("broker", {"HIVE_HOME": str(home), "HIVE_NATS_URL": urls,
                                       "HIVE_METRICS_ADDR": "127.0.0.1:0"}, tmp_path / "logs").start()
    try:
        t = await NatsTransport.connect(urls, name="chaos-cluster", forever=True)
        client = HiveClient(t, timeout=3.0)
        for name in ("bob", "carol"):
            await wait_for(lambda n=name: client.request(ops.REGISTRY_UPSERT, w.RegistryRequest(name=n)), timeout=20)
        traffic = Traffic(client, t)
        tasks = [asyncio.create_task(traffic.receiver(a)) for a in ("bob", "carol")]
        senders = [asyncio.create_task(traffic.sender("bob", ["carol"], 0.02)),
                   asyncio.create_task(traffic.sender("carol", ["bob"], 0.02))]
        await wait_for(lambda: _true(len(traffic.acked) > 50), timeout=20)
        victim = next(n for n in cluster if any("broker" in c for c in n.connection_names()))
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait(5)
        victim.proc = None
        before = len(traffic.acked)
        await wait_for(lambda: _true(len(traffic.acked) > before + 50), timeout=30)
        traffic.stop.set()
        for s in senders:
            s.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        conn = sqlite3.connect(f"file:{home / 'broker.sqlite'}?mode=ro", uri=True)

        async def drained() -> bool:
            return not conn.execute("SELECT 1 FROM messages WHERE acked_at IS NULL LIMIT 1").fetchall()

        await wait_for(drained, timeout=40)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        rows = conn.execute("SELECT id, sender, client_id FROM messages").fetchall()
        conn.close()
        await t.close()
    finally:
        broker.stop()
    stored: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        stored.setdefault((r[1], r[2]), []).append(str(r[0]))
    for key, mid in traffic.acked.items():
        assert stored.get(key) == [mid], key
    assert len(rows) == len(traffic.acked) or all(len(v) == 1 for v in stored.values())
    for mid, flags in traffic.handled.items():
        assert all(flags[1:]), f"message {mid} handled again without the redelivered flag"
    assert integrity_errors(home) == {}
