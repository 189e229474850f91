"""The turn loop's watchers: liveness by progress, usage-limit parks, logins, the hive tools.

A mixin of `TurnLoop` (hive_harness.loop), kept apart to keep each module short.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter

from hive_harness import liveness, metrics
from hive_harness.agent_cli import CliConfig, CliRun
from hive_harness.mcp_bridge import tool_names
from hive_harness.signals import CliSignals, jitter_s, resets_at
from hivewire.wire import broker as wb
from hivewire.wire import ops

if TYPE_CHECKING:
    from hive_harness.bus import Bus
    from hivewire.service import HiveClient

log = structlog.get_logger("hive_harness.loop")
STALLS = Counter("hive_harness_stalls_total", "Turns that went HIVE_STALL_S without progress.")


class Watchers:
    agent: str
    bus: Bus
    cli: CliConfig
    client: HiveClient
    current: CliRun | None
    park_s: float
    jitter_s: float
    stall: liveness.StallConfig
    login_creds: str | None
    tools_missing: list[str]

    def _login_changed(self) -> bool:
        """Credentials to try: there are some, and not the ones that just failed."""
        if not self.cli.has_credentials():
            return False
        return self.login_creds is None or self.cli.credentials_fingerprint() != self.login_creds

    def _park_until(self, sig: CliSignals) -> tuple[float, str]:
        """Until when a rate-limited agent sends no model request, and why that long."""
        now = time.time()
        at = resets_at(sig.rate_limit)
        if at is not None:
            return max(at, now) + jitter_s(self.agent, self.jitter_s), "until the usage limit resets"
        if sig.retry_delay_ms:
            return now + sig.retry_delay_ms / 1000, "the CLI's retry delay"
        return now + self.park_s, "HIVE_RATE_LIMIT_PARK_S"

    async def _check_tools(self, sig: CliSignals) -> None:
        """At each session start: the hive tools must be in the init event's tools, else the turn fails."""
        self.tools_missing = [t for t in tool_names(self.agent) if t not in (sig.tools or [])]
        if not self.tools_missing:
            return
        metrics.FAILURES.labels("hive_tools_missing").inc()
        log.error("hive_tools_missing", missing=self.tools_missing, cli_version=sig.version)
        await self.bus.emit("error", kind="hive_tools_missing", missing=self.tools_missing, cli_version=sig.version,
                            text=f"the agent CLI ({sig.version or '?'}) started without the hive tools "
                                 f"{', '.join(self.tools_missing)}: turn failed")
        run = self.current
        if run is not None:
            run.tools_missing = self.tools_missing
            await run.cancel()

    async def _on_liveness(self, run: CliRun, state: str, idle: float) -> None:
        if state == "stalled":
            STALLS.inc()
            metrics.FAILURES.labels("stalled").inc()
            log.warning("turn_stalled", idle_s=round(idle, 1))
            await self.bus.set_turn_state("stalled")
            text = (f"no progress for {idle:.0f}s (no CLI output, no CPU or I/O in its sandbox); cancelled and "
                    f"retried after {self.stall.kill_s:g}s without progress")
            await self.bus.emit("error", kind="stalled", reason="no_progress", text=text)
            await self._tell_operator(f"{self.agent}: turn stalled: {text}")
        elif state == "working":
            await self.bus.set_turn_state("thinking")
            await self.bus.emit("note", text="progress again: no longer stalled")
        elif state == "kill":
            metrics.FAILURES.labels("stall_cancel").inc()
            log.error("turn_stall_cancel", idle_s=round(idle, 1))
            run.stalled_out = True
            await self.bus.emit("error", kind="stall_cancelled", text=f"no progress for {idle:.0f}s: turn cancelled")
            await run.cancel()

    async def _tell_operator(self, body: str) -> None:
        try:
            await self.client.request(ops.BROKER_SEND, wb.SendRequest(to="operator", body=body), agent=self.agent)
        except Exception as exc:  # the event is out already; the inbox note is best effort
            metrics.FAILURES.labels("operator_send").inc()
            log.warning("operator_send_failed", error=str(exc))
