"""A 3-node NATS cluster on loopback (distinct ports), auth on, JetStream R3:
services on different nodes talk through the cluster, and a client given all
three URLs keeps publishing while the node it is connected to is killed."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import pytest
from nats.js.api import StreamConfig

from hivewire import natsauth, subjects
from hivewire.nats_transport import connect_nats
from hivewire.natsd import nats_server_binary
from hivewire.procs import die_with_parent, free_port, stop_process, wait_port

from support.procs import wait_for

pytestmark = pytest.mark.slow


class Node:
    def __init__(self, node: natsauth.ClusterNode, config: Path, log: Path) -> None:
        self.node, self.config, self.log = node, config, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.node.client_port}"

    def start(self) -> None:
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen([nats_server_binary(), "-c", str(self.config)], stdout=f,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
        assert wait_port("127.0.0.1", self.node.client_port, 10), self.log.read_text()[-2000:]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    home = tmp_path / "hive"
    natsauth.generate(home, agents=("manager", "alice"))
    ports = [(free_port(), free_port()) for _ in range(3)]
    routes = tuple(f"nats-route://127.0.0.1:{cp}" for _, cp in ports)
    nodes = []
    for i, (client, clus) in enumerate(ports, 1):
        spec = natsauth.ClusterNode(name=f"n{i}", host="127.0.0.1", client_port=client, cluster_port=clus,
                                    routes=routes)
        cfg = natsauth.write_cluster_config(home, spec, store_dir=tmp_path / f"js{i}")
        nodes.append(Node(spec, cfg, tmp_path / f"n{i}.log"))
    try:
        for n in nodes:
            n.start()
        yield nodes
    finally:
        for n in nodes:
            n.stop()


def creds(nodes: list[Node], user: str) -> natsauth.Credentials:
    home = nodes[0].config.parent.parent
    c = natsauth.resolve_credentials({"HIVE_NATS_CREDS": str(natsauth.creds_path(home, user))})
    assert c is not None
    return c


async def test_services_on_different_nodes_and_r3_survives_a_node_kill(cluster: list[Node]) -> None:
    n1, _n2, n3 = cluster
    everywhere = ",".join(n.url for n in cluster)
    # A "broker" on node 1 answers an agent connected to node 3: the cluster routes it.
    broker = await connect_nats(n1.url, "hive-broker", forever=False, credentials=creds(cluster, "svc_broker"))
    alice = await connect_nats(n3.url, "alice", forever=False, credentials=creds(cluster, "agent_alice"))

    async def on_counts(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(json.dumps({"unread": 0, "node": "n1"}).encode())

    await broker.subscribe(subjects.broker_pattern("counts"), queue="q", cb=on_counts)
    await broker.flush()

    async def routed() -> bool:
        reply = await alice.request(subjects.broker("alice", "counts"), b"{}", timeout=1)
        return bool(json.loads(reply.data)["node"] == "n1")

    await wait_for(routed, timeout=15, interval=0.2)  # routes settle

    # JetStream with 3 replicas, used by the backup user.
    backup = await connect_nats(everywhere, "hive-backup", credentials=creds(cluster, "svc_backup"))
    js = backup.jetstream(timeout=5)

    async def stream_ready() -> bool:
        try:
            await js.add_stream(StreamConfig(name="HIVE_DONE", subjects=[subjects.BACKUP_DONE], num_replicas=3))
        except nats.errors.Error:
            return False
        return True

    await wait_for(stream_ready, timeout=30, interval=0.5)  # needs a JetStream meta leader
    info = await js.stream_info("HIVE_DONE")
    assert info.config.num_replicas == 3 and info.cluster is not None
    assert len(info.cluster.replicas or []) == 2  # leader + 2 replicas

    # Publish 120 messages; kill the node the publisher is connected to after 40.
    connected_port = backup.connected_url.port if backup.connected_url else None
    victim = next(n for n in cluster if n.node.client_port == connected_port)
    total = 120
    for i in range(total):
        if i == 40:
            victim.stop()
        for _ in range(100):  # retry through the failover; Nats-Msg-Id makes retries idempotent
            try:
                await js.publish(subjects.BACKUP_DONE, json.dumps({"i": i}).encode(), headers={"Nats-Msg-Id": f"m{i}"},
                                 timeout=2)
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError,
                    nats.js.errors.APIError, nats.errors.Error):
                await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"message {i} never stored")
    assert backup.connected_url is not None and backup.connected_url.port != victim.node.client_port

    async def all_stored() -> bool:
        return (await js.stream_info("HIVE_DONE")).state.messages == total

    await wait_for(all_stored, timeout=20, interval=0.3)
    # Requests still cross the cluster between the two surviving nodes.
    a, b = [n for n in cluster if n is not victim]
    if not broker.is_closed:
        await broker.close()  # only the new responder answers now
    broker2 = await connect_nats(a.url, "hive-broker-2", forever=False, credentials=creds(cluster, "svc_broker"))

    async def on_counts2(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(json.dumps({"unread": 0, "node": a.node.name}).encode())

    await broker2.subscribe(subjects.broker_pattern("counts"), queue="q2", cb=on_counts2)
    await broker2.flush()
    alice2 = await connect_nats(b.url, "alice-2", forever=False, credentials=creds(cluster, "agent_alice"))

    async def routed2() -> bool:
        reply = await alice2.request(subjects.broker("alice", "counts"), b"{}", timeout=1)
        return bool(json.loads(reply.data)["node"] == a.node.name)

    await wait_for(routed2, timeout=15, interval=0.2)
    for nc in (broker, alice, backup, broker2, alice2):
        if not nc.is_closed:
            await nc.close()
