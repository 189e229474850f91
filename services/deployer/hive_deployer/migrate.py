"""The deployer's startup migration: idempotent, recorded by a marker file.

At start the deployer adopts what is on disk into deployer.sqlite (agent
dirs without a row become stopped agents; missing config/applied repos are
seeded), then re-renders the meta flake, and writes `.deployer-migration-done`
(containing the migration version). Deleting the marker forces a re-run;
every step only acts on what is missing.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from hive_deployer import git, repos
from hive_deployer.layout import Layout
from hive_deployer.store import AgentRow, Store

log = structlog.get_logger("hive_deployer.migrate")
VERSION = "1"


def done(layout: Layout) -> bool:
    return layout.marker.is_file() and layout.marker.read_text().strip() == VERSION


async def run(layout: Layout, store: Store, runtime_kind: str) -> list[str]:
    """Returns the agents adopted; no-op when the marker says this version already ran."""
    if done(layout):
        return []
    adopted = []
    for name in layout.existing_agent_names():
        if await store.agent(name) is not None:
            continue
        layout.make_agent_dirs(name)
        if git.is_repo(layout.applied(name)) and git.head(layout.applied(name)):
            sha = git.head(layout.applied(name))
            tags = sorted(git.tags(layout.applied(name), "deployed/*"))
            tag = tags[-1] if tags else None
        else:
            sha = await asyncio.to_thread(repos.first_deploy, layout, name, "0")
            tag = "deployed/0"
        now = time.time()
        await store.save(AgentRow(name=name, state="stopped", desired="stopped", runtime=runtime_kind,
                                  created_at=now, since=now, deployed_tag=tag, deployed_sha=sha))
        adopted.append(name)
    log.info("startup_migration", adopted=adopted)
    return adopted


def mark(layout: Layout) -> None:
    layout.marker.write_text(VERSION + "\n")
