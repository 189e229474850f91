"""`hive status` and `hive tap`: look at a running hive over NATS."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import typer

from hivewire import subjects
from hivewire.cli.app import JSON_HELP, app, console, err_console, print_rows, settings
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.runner import resolve_nats_url
from hivewire.service import HiveClient
from hivewire.wire import ops
from hivewire.wire.hosts import HostNameRequest


async def gather_replies(nc: Any, subject: str, wait: float) -> list[dict[str, Any]]:
    """Publish one request and collect every reply that arrives within `wait`."""
    inbox = nc.new_inbox()
    replies: list[dict[str, Any]] = []

    async def on_msg(msg: Any) -> None:
        try:
            replies.append(json.loads(msg.data))
        except ValueError:
            pass

    sub = await nc.subscribe(inbox, cb=on_msg)
    await nc.publish(subject, b"", reply=inbox)
    await asyncio.sleep(wait)
    await sub.unsubscribe()
    return replies


async def discover(nc: Any, wait: float = 0.5) -> list[dict[str, Any]]:
    """Every micro service answering `$SRV.PING`, joined with its `$SRV.STATS`."""
    pings, stats = await asyncio.gather(gather_replies(nc, "$SRV.PING", wait), gather_replies(nc, "$SRV.STATS", wait))
    by_id = {s.get("id"): s for s in stats}
    out = []
    for p in pings:
        st = by_id.get(p.get("id"), {})
        started = st.get("started")
        uptime = None
        if started:
            try:
                ts = datetime.fromisoformat(started.replace("Z", "+00:00"))
                if ts.tzinfo is None:
                    ts = ts.replace(tzinfo=UTC)
                uptime = max(0.0, time.time() - ts.timestamp())
            except ValueError:
                pass
        out.append({**p, "uptime_s": uptime, "metadata": p.get("metadata") or st.get("metadata") or {}})
    return sorted(out, key=lambda s: (s.get("name", ""), s.get("id", "")))


async def agent_hosts(t: NatsTransport) -> list[dict[str, Any]]:
    """Every agent host, as the deployer knows it: a host's NATS user may answer only the
    deployer, so `$SRV.PING` never reaches its hive-agenthost ([] without a deployer)."""
    try:
        got = await HiveClient(t, timeout=2.0).request(ops.HOSTS_LIST, HostNameRequest(name=""))
    except HiveError:
        return []
    now = time.time()
    return [{"name": "hive-agenthost", "id": h.name, "version": h.version or "?", "uptime_s": None,
             "metadata": {"hive_host": h.name, "state": h.state, "runtime": h.runtime,
                          "heartbeat_age_s": round(now - h.last_heartbeat, 1) if h.last_heartbeat else None,
                          "agents": ",".join(h.agents)}}
            for h in got.hosts if h.role == "agents"]


def _fmt_uptime(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _host_state(meta: dict[str, Any]) -> str:
    """An agent host's state in the uptime column: `online`, `lost`, `invited`."""
    if not meta.get("hive_host") or "state" not in meta:
        return ""
    age = meta.get("heartbeat_age_s")
    return f"{meta['state']} ({age}s ago)" if age is not None else str(meta["state"])


@app.command()
def status(
    wait: float = typer.Option(0.5, help="Seconds to collect replies."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List the services answering on NATS, and the agent hosts.

    Each with its agent (for a hive-harness), id, version, uptime and metrics URL; an agent
    host (hive-agenthost, id = its name) with its state and agents, from the deployer.
    """

    async def go() -> list[dict[str, Any]]:
        t = await NatsTransport.connect(resolve_nats_url(settings()), name="hive-cli", forever=False)
        try:
            return await discover(t.nc, wait) + await agent_hosts(t)
        finally:
            await t.close()

    try:
        services = asyncio.run(go())
    except HiveError as err:
        err_console.print(f"[red]error[/red] {err.message}")
        raise typer.Exit(2) from None
    if as_json:
        console.print_json(json.dumps(services))
        return
    # each hive-harness is one agent: its micro metadata names it
    print_rows(("name", "agent", "id", "version", "uptime", "metrics"), (
        (s.get("name", "?"), s["metadata"].get("agent", "") or "-", s.get("id", "?"), s.get("version", "?"),
         _host_state(s["metadata"]) or _fmt_uptime(s.get("uptime_s")), s["metadata"].get("metrics_url", "") or "-")
        for s in services), empty="no services answered (is Hive running? start it with `hive up`)",
        title=f"{len(services)} service(s)")


@app.command()
def tap(
    subject: str = typer.Argument(subjects.ALL, help="Subject or wildcard to watch."),
    count: int = typer.Option(0, help="Stop after this many messages (0: run until Ctrl-C)."),
) -> None:
    """Print live NATS traffic as readable JSON."""

    async def go() -> None:
        t = await NatsTransport.connect(resolve_nats_url(settings()), name="hive-tap", forever=False)
        done = asyncio.Event()
        seen = 0

        async def on_msg(msg: Any) -> None:
            nonlocal seen
            seen += 1
            try:
                body: Any = json.loads(msg.data) if msg.data else None
                text = json.dumps(body, indent=2, ensure_ascii=False)
            except ValueError:
                text = repr(msg.data[:500])
            stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
            console.print(f"[bold cyan]{stamp} {msg.subject}[/bold cyan]", highlight=False)
            console.print(text, highlight=False, markup=False)
            if count and seen >= count:
                done.set()

        await t.nc.subscribe(subject, cb=on_msg)
        await t.flush()
        err_console.print(f"tapping {subject} (Ctrl-C to stop)")
        try:
            await done.wait()
        finally:
            await t.close()

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
    except HiveError as err:
        err_console.print(f"[red]error[/red] {err.message}")
        raise typer.Exit(2) from None
