"""`hive send|inbox|approvals|questions|messages|vacuum`: the broker's CLI plugin.

Registered through the `hive.cli` entry point. Everything goes through the
broker's NATS subjects except `hive vacuum`, which works on broker.sqlite
directly (so it also works while the broker is down).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import typer
from rich.table import Table

from hivewire import subjects
from hivewire.cli.app import console, err_console, print_json, run_client, settings
from hivewire.names import OPERATOR
from hivewire.service import HiveClient
from hivewire.wire import broker as w


def _ts(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _messages_table(msgs: list[w.Message]) -> Table:
    table = Table()
    for col in ("id", "sent", "from", "to", "state", "body"):
        table.add_column(col)
    for m in msgs:
        state = "acked" if m.acked_at else ("in flight" if m.delivered_at else "unread")
        body = m.body if len(m.body) <= 100 else m.body[:97] + "..."
        table.add_row(m.id, _ts(m.sent_at), m.sender, m.to, state, body)
    return table


def register(app: typer.Typer) -> None:
    approvals_app = typer.Typer(help="Approvals waiting for the operator.", no_args_is_help=True)
    questions_app = typer.Typer(help="Questions agents asked the operator.", no_args_is_help=True)
    messages_app = typer.Typer(help="Browse and search every message.", no_args_is_help=True)
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(questions_app, name="questions")
    app.add_typer(messages_app, name="messages")

    @app.command("send")
    def send(
        to: str = typer.Argument(..., help="An agent, `operator`, or `*` for every agent."),
        body: str = typer.Argument(...),
        sender: str = typer.Option(OPERATOR, "--as", help="Send as this agent (default: operator)."),
        client_id: str = typer.Option(
            None, "--id", help="Client id: a retry with it within the broker's duplicate window "
            "(HIVE_BROKER_DEDUP_WINDOW_S, default 24 h) stores the message once."),
        in_reply_to: str = typer.Option(None, "--in-reply-to"),
    ) -> None:
        """Send a message through the broker."""

        async def go(c: HiveClient) -> w.SendReply:
            req = w.SendRequest(to=to, body=body, id=client_id, in_reply_to=in_reply_to)
            return await c.call(subjects.broker(sender, "send"), req, w.SendReply)

        reply = run_client(go)
        console.print(f"sent {reply.id} to {', '.join(reply.recipients) or to}")

    @app.command("inbox")
    def inbox(
        agent: str = typer.Argument(OPERATOR, help="Whose inbox (default: the operator's)."),
        unread: bool = typer.Option(False, "--unread", help="Only messages not acked yet."),
        limit: int = typer.Option(50),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Show an inbox, newest first."""

        async def go(c: HiveClient) -> w.MessagesListReply:
            req = w.MessagesListRequest(recipient=agent, unread=unread, limit=limit)
            return await c.call(subjects.operator("messages", "list"), req, w.MessagesListReply)

        reply = run_client(go)
        print_json(reply) if as_json else console.print(_messages_table(reply.messages))

    @approvals_app.command("list")
    def approvals_list(
        all_: bool = typer.Option(False, "--all", help="Every approval, not only pending ones."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        async def go(c: HiveClient) -> w.ApprovalsListReply:
            req = w.ApprovalsListRequest(status="all" if all_ else "pending")
            return await c.call(subjects.operator("approvals", "list"), req, w.ApprovalsListReply)

        reply = run_client(go)
        if as_json:
            print_json(reply)
            return
        table = Table()
        for col in ("id", "requested", "by", "kind", "agent", "commit", "status", "note"):
            table.add_column(col)
        for a in reply.approvals:
            table.add_row(a.approval_id, _ts(a.requested_at), a.requested_by, a.kind, a.agent, a.commit_ref or "-",
                          a.status, a.note or "")
        console.print(table)

    def _resolve(approval_id: str, decision: str, note: str | None) -> None:
        async def go(c: HiveClient) -> w.Approval:
            req = w.ResolveRequest(approval_id=approval_id, decision=decision, note=note)  # type: ignore[arg-type]
            return await c.call(subjects.operator("approvals", "resolve"), req, w.Approval)

        a = run_client(go)
        console.print(f"approval {a.approval_id} ({a.kind} for {a.agent}): {a.status}")

    @approvals_app.command("approve")
    def approve(approval_id: str, note: str = typer.Option(None, "--note")) -> None:
        _resolve(approval_id, "approve", note)

    @approvals_app.command("deny")
    def deny(approval_id: str, note: str = typer.Option(None, "--note")) -> None:
        _resolve(approval_id, "deny", note)

    @questions_app.command("list")
    def questions_list(
        all_: bool = typer.Option(False, "--all", help="Answered ones too."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        async def go(c: HiveClient) -> w.QuestionsListReply:
            req = w.QuestionsListRequest(open_only=not all_)
            return await c.call(subjects.operator("questions", "list"), req, w.QuestionsListReply)

        reply = run_client(go)
        if as_json:
            print_json(reply)
            return
        table = Table()
        for col in ("id", "asked", "asker", "to", "question", "options", "deadline", "answer"):
            table.add_column(col)
        for q in reply.questions:
            answer = ", ".join(q.answer) if isinstance(q.answer, list) else (q.answer or "")
            opts = " | ".join(q.options) + (" (multi)" if q.multi else "")
            table.add_row(q.question_id, _ts(q.asked_at), q.asker, q.to, q.question, opts, _ts(q.deadline_at), answer)
        console.print(table)

    @questions_app.command("answer")
    def questions_answer(
        question_id: str,
        answer: list[str] = typer.Argument(..., help="The answer; several words pick several options (multi)."),
        choices: bool = typer.Option(False, "--choices", help="Treat each argument as one chosen option."),
    ) -> None:
        value: str | list[str] = answer if choices else " ".join(answer)

        async def go(c: HiveClient) -> w.AnswerReply:
            req = w.OperatorAnswerRequest(question_id=question_id, answer=value)
            return await c.call(subjects.operator("questions", "answer"), req, w.AnswerReply)

        run_client(go)
        console.print(f"answered question {question_id}")

    @messages_app.command("search")
    def messages_search(
        query: str,
        agent: str = typer.Option(None, "--agent"),
        limit: int = typer.Option(50),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Full-text search over message bodies."""

        async def go(c: HiveClient) -> w.MessagesListReply:
            req = w.MessagesSearchRequest(query=query, agent=agent, limit=limit)
            return await c.call(subjects.operator("messages", "search"), req, w.MessagesListReply)

        reply = run_client(go)
        print_json(reply) if as_json else console.print(_messages_table(reply.messages))

    @messages_app.command("list")
    def messages_list(
        agent: str = typer.Option(None, "--agent"),
        unread: bool = typer.Option(False, "--unread"),
        limit: int = typer.Option(50),
        before_id: str = typer.Option(None, "--before-id"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        async def go(c: HiveClient) -> w.MessagesListReply:
            req = w.MessagesListRequest(agent=agent, unread=unread, limit=limit, before_id=before_id)
            return await c.call(subjects.operator("messages", "list"), req, w.MessagesListReply)

        reply = run_client(go)
        print_json(reply) if as_json else console.print(_messages_table(reply.messages))

    @app.command("vacuum")
    def vacuum(
        dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be deleted."),
        days: float = typer.Option(None, "--days", help="Age limit (default HIVE_BROKER_RETENTION_DAYS or 30)."),
    ) -> None:
        """Delete acked messages older than the retention limit from broker.sqlite."""
        from hive_broker import retention
        from hive_broker.config import BrokerConfig
        from hive_broker.store import open_sync

        path = settings().broker_db
        if not path.exists():
            err_console.print(f"{path} does not exist yet: nothing to do")
            return
        age = days if days is not None else BrokerConfig.from_env().retention_days
        cutoff = time.time() - age * 86400
        conn = open_sync(path)
        try:
            with console.status("broker: deleting expired acked messages...") as status:
                n = retention.sweep_sync(conn, cutoff, dry_run=dry_run,
                                         progress=lambda done: status.update(f"broker: deleted {done} so far..."))
        finally:
            conn.close()
        verb = "would delete" if dry_run else "deleted"
        console.print(f"broker: {verb} {n} acked message(s) older than {age:g} days (before {_ts(cutoff)})")
