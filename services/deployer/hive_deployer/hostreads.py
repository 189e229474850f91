"""Reading an agent's files wherever its host is (issue 26).

An agent's `state/` (events.sqlite, turn-stats.sqlite, its CLI's files) lives
on the host that runs it. `hive.deployer.history` and `turn_stats` (the
dashboard's view of an agent whose harness does not answer) read it here for
an agent on the core host, and ask its agent host (`hive.host.<h>.history|
turn_stats`, the same read-only reads there) for one placed elsewhere. A lost
host, or one that does not answer, is an `unavailable` error naming the host:
never an empty history that looks like an agent that did nothing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from hive_deployer import history, metrics
from hive_deployer.layout import check_name
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.agent import HistoryReply
from hivewire.wire.deployer import AgentHistoryRequest, TurnStatsReply, TurnStatsRequest

if TYPE_CHECKING:
    from hive_deployer.hosts import Hosts

READ_TIMEOUT_S = 10.0


async def ask_host(hosts: Hosts, name: str, host: str, op: Any, req: Any) -> Any:
    """`op` on the agent host `host` for `name`'s files, or `unavailable` naming the host."""
    if hosts.lost(host):
        raise HiveError("unavailable", f"{name}'s host {host} is lost: its files cannot be read now")
    try:
        return await hosts.client.request(op, req, host=host, timeout=READ_TIMEOUT_S)
    except HiveError as exc:
        if exc.code in ("timeout", "unavailable"):
            metrics.FAILURES.labels("host_read").inc()
            raise HiveError("unavailable", f"{name}'s host {host} did not answer: {exc.message}") from None
        raise


async def read_history(hosts: Hosts, req: AgentHistoryRequest) -> HistoryReply:
    name = check_name(req.name)
    host = hosts.placed(name)
    if host is None:
        return HistoryReply(events=await asyncio.to_thread(history.read_events, hosts.agents.layout, name,
                                                           req.limit, req.before_id))
    got: HistoryReply = await ask_host(hosts, name, host, ops.HOST_HISTORY, req)
    return got


async def read_turn_stats(hosts: Hosts, req: TurnStatsRequest) -> TurnStatsReply:
    name = check_name(req.name)
    host = hosts.placed(name)
    if host is None:
        return TurnStatsReply(turns=await asyncio.to_thread(history.read_turns, hosts.agents.layout, name,
                                                            req.limit))
    got: TurnStatsReply = await ask_host(hosts, name, host, ops.HOST_TURN_STATS, req)
    return got
