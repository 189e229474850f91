"""`hive ... | cat`: the real CLI with stdout a pipe, against a real broker.

Piped output is for grep and scripts: values are never cut or wrapped at 80
columns (tab-separated rows, header first), and an empty listing is a plain
sentence, not an empty table frame.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as w
from hivewire.wire import ops

from .conftest import ready
from support.procs import ServiceProcess

HIVE = str(Path(sys.executable).with_name("hive"))
FRAME = set("┏┃━─│┌┐└┘╭╮╰╯")  # rich table borders


def hive(settings: Settings, *args: str) -> str:
    env = {**os.environ, "HIVE_HOME": str(settings.home), "COLUMNS": "80"}
    out = subprocess.run([HIVE, *args], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, (args, out.stderr)
    assert not FRAME & set(out.stdout), out.stdout
    return out.stdout


async def _send(nats_url: str, body: str) -> str:
    t = await NatsTransport.connect(nats_url, name="cli-pipe-test", forever=False)
    try:
        c = HiveClient(t)
        await ready(c)
        await c.request(ops.REGISTRY_UPSERT, w.RegistryRequest(name="alice"))
        r = await c.request(ops.BROKER_SEND, w.SendRequest(to="operator", body=body), agent="alice")
        return r.id
    finally:
        await t.close()


async def _ready(nats_url: str) -> None:
    t = await NatsTransport.connect(nats_url, name="cli-pipe-test", forever=False)
    try:
        await ready(HiveClient(t))
    finally:
        await t.close()


def test_piped_listings_are_whole_and_empty_ones_say_so(broker_proc: ServiceProcess, settings: Settings,
                                                        nats_url: str) -> None:
    broker_proc.start()
    asyncio.run(_ready(nats_url))
    assert hive(settings, "inbox").strip() == "no messages for operator"
    assert hive(settings, "approvals", "list").strip() == "no pending approvals"
    assert hive(settings, "questions", "list").strip() == "no open questions"
    assert hive(settings, "messages", "search", "platypus").strip() == "no messages match 'platypus'"
    assert hive(settings, "backup", "list", "--offline").strip().startswith("no backups yet")

    body = "the platypus report: " + "x" * 300 + " END"
    msg_id = asyncio.run(_send(nats_url, body))
    for args in (("inbox",), ("messages", "list"), ("messages", "search", "platypus")):
        lines = hive(settings, *args).splitlines()
        assert lines[0].split("\t") == ["id", "sent", "from", "to", "state", "body"], lines
        row = lines[1].split("\t")
        assert row[0] == msg_id and row[2:4] == ["alice", "operator"] and row[5] == body  # whole, on one line

    status = hive(settings, "status").splitlines()
    assert status[0].split("\t") == ["name", "agent", "id", "version", "uptime", "metrics"]
    broker = next(line.split("\t") for line in status[1:] if line.startswith("hive-broker\t"))
    assert broker[1] == "-" and broker[5].startswith("http://127.0.0.1:") and broker[5].endswith("/metrics")

    migrations = hive(settings, "migrate", "status").splitlines()
    row = next(line.split("\t") for line in migrations if line.startswith("broker\t"))
    assert row[1] == str(settings.broker_db)  # a long path stays whole
