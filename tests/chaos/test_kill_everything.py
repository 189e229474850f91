"""Chaos: with traffic flowing, kill -9 the broker, a harness, the deployer and
the backup service in turn, then kill and restart the nats-server.

Traffic: three agents exchange messages through the real broker. `alice` is a
real harness process running the real claude CLI against the Messages-API
simulator; `bob` and `carol` are in-test receivers doing what a harness does
(recv with an instance id, ack after handling; a new instance after a lost
reply, so the broker hands in-flight messages back). Every sender retries with
its client id until it gets a reply.

Afterwards: every acknowledged send is stored exactly once; every stored
message is acked (handled); a message handled twice was visibly redelivered;
every service answers again; every sqlite file passes integrity_check.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from hive_harness.simmodel import Script, SimModel
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.natsd import NatsServer
from hivewire.service import HiveClient
from hivewire.wire import broker as w
from hivewire.wire import ops

from support.procs import ServiceProcess, ping_names, wait_for

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = ROOT / ".tools/node_modules/.bin/claude"
VIRTUAL = ("bob", "carol")


class Traffic:
    """Senders that retry with their client id; receivers that ack what they handled."""

    def __init__(self, client: HiveClient, transport: NatsTransport) -> None:
        self.client = client
        self.transport = transport
        self.acked: dict[tuple[str, str], str] = {}  # (sender, client id) -> message id
        self.handled: dict[str, list[bool]] = {}  # message id -> redelivered flag of every receipt
        self.retries = 0
        self.stop = asyncio.Event()

    async def send(self, sender: str, to: str, cid: str) -> None:
        while True:
            try:
                r = await self.client.request(ops.BROKER_SEND, w.SendRequest(to=to, body=f"chaos {cid}", id=cid),
                                              timeout=2.0, agent=sender)
                self.acked[(sender, cid)] = r.id
                return
            except HiveError as err:
                assert err.code in ("timeout", "unavailable"), err
            except Exception:  # connection being re-established
                pass
            self.retries += 1
            await asyncio.sleep(0.2)

    async def sender(self, me: str, peers: list[str], period: float) -> None:
        i = 0
        while not self.stop.is_set():
            await self.send(me, peers[i % len(peers)], f"{me}-{i}")
            i += 1
            await asyncio.sleep(period)

    async def receiver(self, me: str) -> None:
        instance = uuid.uuid4().hex[:8]
        while True:
            try:
                r = await self.client.request(ops.BROKER_RECV, w.RecvRequest(max=8, wait_s=0.5, instance=instance),
                                              timeout=3.0, agent=me)
                for m in r.messages:
                    self.handled.setdefault(m.id, []).append(m.redelivered)
                if r.messages:
                    await self._ack(me, [m.id for m in r.messages])
                elif self.stop.is_set():
                    await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The reply may be lost after the broker marked messages in flight:
                # restart like a harness does (new instance), so they come back redelivered.
                instance = uuid.uuid4().hex[:8]
                await self._presence(me, instance)
                await asyncio.sleep(0.3)

    async def _presence(self, me: str, instance: str) -> None:
        from hivewire.wire.agent import Presence

        for _ in range(50):
            try:
                await self.client.emit(ops.PRESENCE, Presence(state="idle", since=time.time(), instance=instance,
                                                              ts=time.time()), agent=me)
                await self.transport.flush()
                return
            except Exception:
                await asyncio.sleep(0.2)

    async def _ack(self, me: str, ids: list[str]) -> None:
        while True:
            try:
                await self.client.request(ops.BROKER_ACK, w.AckRequest(ids=ids), timeout=2.0, agent=me)
                return
            except Exception:
                await asyncio.sleep(0.2)


def integrity_errors(home: Path) -> dict[str, str]:
    bad = {}
    for db in sorted(home.rglob("*.sqlite")):
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            res = conn.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            res = f"error: {exc}"
        finally:
            conn.close()
        if res != "ok":
            bad[str(db)] = res
    return bad


@pytest.fixture
def chaos_env(tmp_path: Path) -> Any:
    if not CLAUDE.exists():
        pytest.skip("the claude CLI is not installed in .tools (scripts/install)")
    sim = SimModel(Script()).start()
    server = NatsServer(tmp_path / "nats").start()
    home = tmp_path / "hive"
    home.mkdir()
    userhome = tmp_path / "userhome"
    userhome.mkdir()
    env = {
        "HIVE_HOME": str(home), "HIVE_NATS_URL": server.url, "HIVE_METRICS_ADDR": "127.0.0.1:0",
        "HIVE_DEPLOYER_ENSURE_MANAGER": "0", "HIVE_BROKER_INFLIGHT_TIMEOUT_S": "8",
        "HIVE_AGENT_CMD": str(CLAUDE), "ANTHROPIC_BASE_URL": sim.url, "ANTHROPIC_API_KEY": "sk-simulator",
        "HOME": str(userhome), "HIVE_WAKE_POLL_S": "1", "HIVE_HEARTBEAT_S": "0.5", "HIVE_ALLOWED_TOOLS": "",
        "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    procs = {
        "broker": ServiceProcess("broker", env, tmp_path / "logs"),
        "deployer": ServiceProcess("deployer", env, tmp_path / "logs"),
        "backup": ServiceProcess("backup", env, tmp_path / "logs"),
        "harness": ServiceProcess("harness", {**env, "HIVE_AGENT": "alice"}, tmp_path / "logs"),
    }
    yield server, procs, home, tmp_path
    for p in procs.values():
        p.stop()
    server.stop()
    sim.stop()


async def test_kill9_each_service_and_restart_nats_under_traffic(chaos_env: Any) -> None:
    server, procs, home, _tmp = chaos_env
    procs["broker"].start()
    t = await NatsTransport.connect(server.url, name="chaos-driver", forever=True)
    client = HiveClient(t, timeout=3.0)
    for name in ("alice", *VIRTUAL):
        await wait_for(lambda n=name: client.request(ops.REGISTRY_UPSERT, w.RegistryRequest(name=n)), timeout=20)
    for short in ("deployer", "backup", "harness"):
        procs[short].start()
    want = {"hive-broker", "hive-deployer", "hive-backup", "hive-harness"}

    async def all_up() -> bool:
        return want <= set(await ping_names(t.nc, harnesses=("alice",)))

    await wait_for(all_up, timeout=30)
    traffic = Traffic(client, t)
    tasks = [asyncio.create_task(traffic.receiver(a)) for a in VIRTUAL]
    tasks += [asyncio.create_task(traffic.sender("bob", ["carol"], 0.05)),
              asyncio.create_task(traffic.sender("carol", ["bob"], 0.05)),
              asyncio.create_task(traffic.sender("operator", ["alice"], 2.0))]  # alice's turns use the real CLI

    async def settle(n: float) -> None:
        before = len(traffic.acked)
        await asyncio.sleep(n)
        await wait_for(lambda: _true(len(traffic.acked) > before + 5), timeout=30)

    await settle(2)
    for short in ("broker", "harness", "deployer", "backup"):
        procs[short].kill9()
        await asyncio.sleep(0.3)
        procs[short].start()
        await wait_for(all_up, timeout=30)
        await settle(1.5)
    # the nats-server itself: kill -9, restart on the same port with the same JetStream dir
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(5)
    server.proc = None
    await asyncio.sleep(0.5)
    server.start()
    await wait_for(all_up, timeout=40)
    await settle(2)
    traffic.stop.set()
    await asyncio.sleep(0.5)
    for task in tasks[2:]:
        task.cancel()  # senders stop (a send cut here was never acknowledged)
    await asyncio.gather(*tasks[2:], return_exceptions=True)

    conn = sqlite3.connect(f"file:{home / 'broker.sqlite'}?mode=ro", uri=True)

    def unfinished() -> list[Any]:
        return conn.execute("SELECT id, recipient FROM messages WHERE acked_at IS NULL").fetchall()

    deadline = time.monotonic() + 60
    while unfinished() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    for task in tasks[:2]:
        task.cancel()
    await asyncio.gather(*tasks[:2], return_exceptions=True)

    rows = conn.execute("SELECT id, sender, client_id, recipient, acked_at, redelivery_count FROM messages").fetchall()
    conn.close()
    by_key: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        by_key.setdefault((r[1], r[2]), []).append(str(r[0]))
    assert traffic.retries > 0  # the kills really hit the senders
    assert len(traffic.acked) > 50
    for key, mid in traffic.acked.items():
        assert by_key.get(key) == [mid], key  # acknowledged -> stored, exactly once, under that id
    assert [r for r in rows if r[4] is None] == [], "every stored message was handled and acked"
    redelivered = {str(r[0]) for r in rows if r[5] > 0}
    for mid, flags in traffic.handled.items():
        assert flags[0] is False or mid in redelivered, mid
        assert all(flags[1:]), f"message {mid} handled again without the redelivered flag"
    # alice: one turn per message, or a visible redelivery
    ev = sqlite3.connect(f"file:{home / 'agents/alice/state/events.sqlite'}?mode=ro", uri=True)
    starts: dict[str, int] = {}
    for (payload,) in ev.execute("SELECT payload_json FROM events WHERE kind = 'turn_start'"):
        mid = __import__("json").loads(payload).get("message_id")
        if mid:
            starts[str(mid)] = starts.get(str(mid), 0) + 1
    ev.close()
    to_alice = {str(r[0]) for r in rows if r[3] == "alice"}
    assert to_alice and to_alice <= set(starts), "every message to alice started a turn"
    assert all(n == 1 or mid in redelivered for mid, n in starts.items())
    assert await all_up()
    await t.close()
    for p in procs.values():
        p.stop()
    assert integrity_errors(home) == {}
    logs = {k: p.log() for k, p in procs.items()}
    assert not any("Traceback" in v and "CancelledError" not in v for v in logs.values()), logs


async def _true(v: bool) -> bool:
    return v


def test_integrity_helper_flags_a_corrupt_file(tmp_path: Path) -> None:
    """The integrity check above can fail: a file with a trashed page is reported."""
    db = tmp_path / "x.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(x)")
    conn.execute("CREATE INDEX ti ON t(x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(os.urandom(200).hex(),) for _ in range(300)])
    conn.commit()
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    data[2 * page: 4 * page] = b"\xaa" * (2 * page)  # two b-tree pages of junk
    db.write_bytes(bytes(data))
    assert integrity_errors(tmp_path) != {}
