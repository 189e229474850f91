"""Agents on other hosts, in the hive's backups (issue 26).

An agent placed on an agent host keeps its `state/` and `creds/` there, out of
the core host's reach. Before a snapshot that takes databases, secrets or
bulky files, the backup service asks the deployer for the hosts
(`hive.hosts.list`) and, for every agent of every online agent host, has that
host pack a live copy (`hive.host.<h>.pack` with `live`: sqlite files through
the backup API, so a running agent need not stop; never following a link),
pulls it in chunks over NATS (`hive.host.<h>.read`), checks its size and
sha256, extracts it with the same checks as a restore (`safetar`: plain files
and dirs only, private modes) and swaps it in as
`HIVE_HOME/remote/<host>/agents/<agent>/{state,creds}`. The snapshot then takes
those like local agents' files: `*.sqlite` as databases, `creds/` encrypted
with the secrets, the rest as bulky. A lost host keeps the copy of the last
backup that reached it (said in the log and `hive_backup_failures_total{stage="remote"}`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import structlog

from hive_backup import metrics, safetar
from hivewire.names import validate_agent_name
from hivewire.service import HiveClient
from hivewire.wire import ops
from hivewire.wire.hosts import ChunkRequest, DropRequest, HostNameRequest, PackRequest

log = structlog.get_logger("hive_backup.remote")
MIRROR = "remote"
CHUNK = 256 * 1024


async def pull(client: HiveClient, home: Path) -> list[str]:
    """Refresh `remote/` from every online agent host; returns what could not be (hosts, agents)."""
    try:
        hosts = await client.request(ops.HOSTS_LIST, HostNameRequest(name=""), timeout=10)
    except Exception as exc:  # no deployer (a single-host test hive): no other hosts to ask
        log.info("backup_remote_skipped", reason=str(exc))
        return []
    problems: list[str] = []
    for h in hosts.hosts:
        if h.role == "core" or not h.agents:
            continue
        if h.state != "online":
            problems.append(f"host {h.name} is {h.state}: its agents' files are as of the last backup that reached it")
            continue
        for agent in h.agents:
            try:
                size = await pull_agent(client, home, h.name, agent)
                log.info("backup_remote_pulled", host=h.name, agent=agent, bytes=size)
            except Exception as exc:
                problems.append(f"{agent} on {h.name}: {exc}")
    for p in problems:
        metrics.FAILURES.labels("remote").inc()
        log.warning("backup_remote_incomplete", problem=p)
    return problems


async def pull_agent(client: HiveClient, home: Path, host: str, agent: str) -> int:
    host, agent = validate_agent_name(host, allow_reserved=True), validate_agent_name(agent, allow_reserved=True)
    tid = uuid.uuid4().hex
    incoming = home / MIRROR / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
    arch, scratch = incoming / f"{tid}.tar.gz", incoming / tid
    try:
        p = await client.request(ops.HOST_PACK, PackRequest(agent=agent, transfer=tid, live=True), timeout=300,
                                 host=host)
        digest = hashlib.sha256()
        with open(arch, "wb") as f:
            offset = 0
            while offset < p.size:
                c = await client.request(ops.HOST_READ, ChunkRequest(transfer=tid, offset=offset, length=CHUNK),
                                         timeout=60, host=host)
                if not c.data:
                    raise OSError(f"the archive ended at {offset} of {p.size} bytes")
                f.write(c.data)
                digest.update(c.data)
                offset += len(c.data)
        if digest.hexdigest() != p.sha256:
            raise OSError("the archive's sha256 differs from the host's: not kept")
        await asyncio.to_thread(_install, arch, scratch, home / MIRROR / host / "agents" / agent)
        return p.size
    finally:
        try:
            await client.request(ops.HOST_DROP, DropRequest(agent=agent, transfer=tid), timeout=30, host=host)
        except Exception as exc:
            log.warning("backup_remote_drop_failed", host=host, agent=agent, error=str(exc))
        arch.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _install(arch: Path, scratch: Path, dest: Path) -> None:
    scratch.mkdir(mode=0o700)
    with tarfile.open(arch, "r:gz") as tar:
        members = [m for m in safetar.check_members(tar, arch.name) if m.name.split("/")[0] in ("state", "creds")]
        safetar.extract(tar, members, scratch, private=True)
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    for sub in ("state", "creds"):
        old = dest / sub
        if old.exists():
            os.replace(old, scratch / f"old-{sub}")
        if (scratch / sub).is_dir():
            os.replace(scratch / sub, old)
