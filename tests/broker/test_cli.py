"""The broker's `hive` sub-commands against a real broker process."""

from __future__ import annotations

import asyncio
import time

import typer
from typer.testing import CliRunner

from hive_broker.cli import register
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as w
from hivewire.wire import ops

from .conftest import ready
from support.procs import ServiceProcess


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


async def _setup(nats_url: str) -> tuple[str, str]:
    t = await NatsTransport.connect(nats_url, name="cli-test", forever=False)
    c = HiveClient(t)
    await ready(c)
    await c.request(ops.REGISTRY_UPSERT, w.RegistryRequest(name="alice"))
    ap = await c.request(ops.BROKER_APPROVE, w.ApproveRequest(kind="apply_commit", agent="alice",
                                                              commit_ref="deadbee"), agent="manager")
    q = await c.request(ops.BROKER_ASK, w.AskRequest(question="tabs or spaces?", options=["tabs", "spaces"]),
                        agent="alice")
    await c.request(ops.BROKER_SEND, w.SendRequest(to="operator", body="platypus report ready"), agent="alice")
    await t.close()
    return ap.approval_id, q.question_id


def test_cli_commands(broker_proc: ServiceProcess, settings: Settings, nats_url: str) -> None:
    broker_proc.start()
    approval_id, question_id = asyncio.run(_setup(nats_url))
    app, runner = _app(), CliRunner()

    def ok(*args: str) -> str:
        r = runner.invoke(app, list(args))
        assert r.exit_code == 0, (args, r.output)
        return r.output

    assert "sent" in ok("send", "alice", "hello from the operator")
    assert "platypus" in ok("inbox", "--unread", "--json")
    assert "deadbee" in ok("approvals", "list", "--json")
    assert "approved" in ok("approvals", "approve", approval_id, "--note", "ship")
    bad = runner.invoke(app, ["approvals", "deny", approval_id])
    assert bad.exit_code == 2 and "conflict" in bad.output
    assert "tabs or spaces" in ok("questions", "list", "--json")
    ok("questions", "answer", question_id, "tabs")
    assert "tabs or spaces" not in ok("questions", "list", "--json")
    assert "platypus" in ok("messages", "search", "platypus", "--json")
    assert "hello from the operator" in ok("messages", "list", "--agent", "alice", "--json")
    # `*` asks first, like the dashboard: no, or no input at all, sends nothing; yes or --yes sends
    for answer in ("n\n", ""):
        refused = runner.invoke(app, ["send", "*", "all hands (refused)"], input=answer)
        assert refused.exit_code == 1 and "Send this to every agent?" in refused.output, refused.output
    assert "sent" in runner.invoke(app, ["send", "*", "all hands (asked)"], input="y\n").output
    assert "sent" in ok("send", "*", "all hands (--yes)", "--yes")
    everyone = ok("messages", "list", "--agent", "alice", "--json")
    assert "all hands (asked)" in everyone and "all hands (--yes)" in everyone
    assert "all hands (refused)" not in everyone
    unknown = runner.invoke(app, ["send", "nobody", "hi"])
    assert unknown.exit_code == 2 and "unknown_recipient" in unknown.output
    broker_proc.stop()

    # vacuum works on the file; nothing is old enough yet
    assert "would delete 0" in ok("vacuum", "--dry-run")
    from hive_broker.store import open_sync

    conn = open_sync(settings.broker_db)
    conn.execute("UPDATE messages SET acked_at = ?, sent_at = ? WHERE body LIKE 'platypus%'",
                 (time.time() - 40 * 86400, time.time() - 40 * 86400))
    conn.close()
    assert "would delete 1" in ok("vacuum", "--dry-run")
    assert "deleted 1" in ok("vacuum")
    assert "would delete 0" in ok("vacuum", "--dry-run")
