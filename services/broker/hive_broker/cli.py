"""`hive send|inbox|approvals|questions|messages|vacuum`: the broker's CLI plugin.

Registered through the `hive.cli` entry point. Everything goes through the
broker's NATS subjects except `hive vacuum`, which works on broker.sqlite
directly (so it also works while the broker is down).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import typer

from hivewire.cli.app import JSON_HELP, console, err_console, is_tty, print_json, print_rows, run_client, settings
from hivewire.names import OPERATOR
from hivewire.service import HiveClient
from hivewire.wire import broker as w
from hivewire.wire import ops


def _ts(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _messages(msgs: list[w.Message], empty: str) -> None:
    """A terminal shortens long bodies to 100 characters; a pipe gets every body whole."""
    def body(m: w.Message) -> str:
        return m.body if not is_tty() or len(m.body) <= 100 else m.body[:97] + "..."

    print_rows(("id", "sent", "from", "to", "state", "body"), (
        (m.id, _ts(m.sent_at), m.sender, m.to, "acked" if m.acked_at else ("in flight" if m.delivered_at else "unread"),
         body(m)) for m in msgs), empty=empty)


def _confirm(question: str) -> bool:
    """y/N on stdin; no input (a pipe, a script) is no."""
    try:
        return bool(typer.confirm(question, default=False))
    except typer.Abort:
        return False


LIMIT = typer.Option(50, help="At most this many messages.")
JSON = typer.Option(False, "--json", help=JSON_HELP)
AGENT = typer.Option(None, "--agent", help="Only messages from or to this agent.")


def register(app: typer.Typer) -> None:
    approvals_app = typer.Typer(help="Approvals waiting for the operator.", no_args_is_help=True)
    questions_app = typer.Typer(help="Questions agents asked the operator.", no_args_is_help=True)
    messages_app = typer.Typer(help="Browse and search every message.", no_args_is_help=True)
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(questions_app, name="questions")
    app.add_typer(messages_app, name="messages")
    from hive_broker import cli_costs

    cli_costs.register(app)  # hive costs, hive budget

    @app.command("send")
    def send(
        to: str = typer.Argument(..., help="An agent, `operator`, or `*` for every agent."),
        body: str = typer.Argument(..., help="The message text."),
        sender: str = typer.Option(OPERATOR, "--as", help="Send as this agent (default: operator)."),
        client_id: str = typer.Option(
            None, "--id", help="Client id: a retry with it within the broker's duplicate window "
            "(HIVE_BROKER_DEDUP_WINDOW_S, default 24 h) stores the message once."),
        in_reply_to: str = typer.Option(None, "--in-reply-to", help="The id of the message this answers."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Send to `*` without asking first."),
    ) -> None:
        """Send a message through the broker.

        `*` reaches every agent: it asks for confirmation first (as the dashboard does) unless --yes;
        without a terminal to answer on (no input), nothing is sent."""
        if to == "*" and not yes and not _confirm("Send this to every agent?"):
            err_console.print("not sent (`*` is every agent; add --yes to send without asking)",
                              markup=False, highlight=False)
            raise typer.Exit(1)

        async def go(c: HiveClient) -> w.SendReply:
            req = w.SendRequest(to=to, body=body, id=client_id, in_reply_to=in_reply_to)
            return await c.request(ops.BROKER_SEND, req, agent=sender)

        reply = run_client(go)
        console.print(f"sent {reply.id} to {', '.join(reply.recipients) or to}")

    @app.command("inbox")
    def inbox(
        agent: str = typer.Argument(OPERATOR, help="Whose inbox (default: the operator's)."),
        unread: bool = typer.Option(False, "--unread", help="Only messages not acked yet."),
        limit: int = LIMIT,
        as_json: bool = JSON,
    ) -> None:
        """Show an inbox, newest first."""

        async def go(c: HiveClient) -> w.MessagesListReply:
            req = w.MessagesListRequest(recipient=agent, unread=unread, limit=limit)
            return await c.request(ops.MESSAGES_LIST, req)

        reply = run_client(go)
        empty = f"no {'unread ' if unread else ''}messages for {agent}"
        print_json(reply) if as_json else _messages(reply.messages, empty)

    @approvals_app.command("list")
    def approvals_list(
        all_: bool = typer.Option(False, "--all", help="Every approval, not only pending ones."),
        as_json: bool = JSON,
    ) -> None:
        """Approvals (deploys agents asked for), pending ones unless --all."""

        async def go(c: HiveClient) -> w.ApprovalsListReply:
            req = w.ApprovalsListRequest(status="all" if all_ else "pending")
            return await c.request(ops.APPROVALS_LIST, req)

        reply = run_client(go)
        if as_json:
            print_json(reply)
            return
        print_rows(("id", "requested", "by", "kind", "agent", "commit", "status", "note"), (
            (a.approval_id, _ts(a.requested_at), a.requested_by, a.kind, a.agent, a.commit_ref or "-", a.status,
             a.note or "-") for a in reply.approvals), empty="no approvals" if all_ else "no pending approvals")

    def _resolve(approval_id: str, decision: str, note: str | None) -> None:
        async def go(c: HiveClient) -> w.Approval:
            req = w.ResolveRequest(approval_id=approval_id, decision=decision, note=note)  # type: ignore[arg-type]
            return await c.request(ops.APPROVALS_RESOLVE, req)

        a = run_client(go)
        console.print(f"approval {a.approval_id} ({a.kind} for {a.agent}): {a.status}")

    ID = typer.Argument(..., help="The approval's id (`hive approvals list`).")
    NOTE = typer.Option(None, "--note", help="A note for the agent that asked.")

    @approvals_app.command("approve")
    def approve(approval_id: str = ID, note: str = NOTE) -> None:
        """Approve: the deployer builds and deploys it."""
        _resolve(approval_id, "approve", note)

    @approvals_app.command("deny")
    def deny(approval_id: str = ID, note: str = NOTE) -> None:
        """Deny: nothing is deployed; the agent is told (with the note)."""
        _resolve(approval_id, "deny", note)

    @questions_app.command("list")
    def questions_list(
        all_: bool = typer.Option(False, "--all", help="Answered ones too."),
        as_json: bool = JSON,
    ) -> None:
        """Questions agents asked the operator, open ones unless --all."""

        async def go(c: HiveClient) -> w.QuestionsListReply:
            req = w.QuestionsListRequest(open_only=not all_)
            return await c.request(ops.QUESTIONS_LIST, req)

        reply = run_client(go)
        if as_json:
            print_json(reply)
            return
        def answer(q: w.Question) -> str:
            return (", ".join(q.answer) if isinstance(q.answer, list) else q.answer) or "-"

        print_rows(("id", "asked", "asker", "to", "question", "options", "deadline", "answer"), (
            (q.question_id, _ts(q.asked_at), q.asker, q.to, q.question,
             " | ".join(q.options) + (" (multi)" if q.multi else "") or "-", _ts(q.deadline_at), answer(q))
            for q in reply.questions), empty="no questions" if all_ else "no open questions")

    @questions_app.command("answer")
    def questions_answer(
        question_id: str = typer.Argument(..., help="The question's id (`hive questions list`)."),
        answer: list[str] = typer.Argument(..., help="The answer; several words pick several options (multi)."),
        choices: bool = typer.Option(False, "--choices", help="Treat each argument as one chosen option."),
    ) -> None:
        """Answer an agent's question."""
        value: str | list[str] = answer if choices else " ".join(answer)

        async def go(c: HiveClient) -> w.AnswerReply:
            req = w.OperatorAnswerRequest(question_id=question_id, answer=value)
            return await c.request(ops.QUESTIONS_ANSWER, req)

        run_client(go)
        console.print(f"answered question {question_id}")

    @messages_app.command("search")
    def messages_search(
        query: str = typer.Argument(..., help="Words to find (full-text search syntax)."),
        agent: str = AGENT,
        limit: int = LIMIT,
        as_json: bool = JSON,
    ) -> None:
        """Full-text search over message bodies."""

        async def go(c: HiveClient) -> w.MessagesListReply:
            req = w.MessagesSearchRequest(query=query, agent=agent, limit=limit)
            return await c.request(ops.MESSAGES_SEARCH, req)

        reply = run_client(go)
        print_json(reply) if as_json else _messages(reply.messages, f"no messages match {query!r}")

    @messages_app.command("list")
    def messages_list(
        agent: str = AGENT,
        unread: bool = typer.Option(False, "--unread", help="Only messages not acked yet."),
        limit: int = LIMIT,
        before_id: str = typer.Option(None, "--before-id", help="Only messages older than this id (paging)."),
        as_json: bool = JSON,
    ) -> None:
        """Every message, newest first."""

        async def go(c: HiveClient) -> w.MessagesListReply:
            req = w.MessagesListRequest(agent=agent, unread=unread, limit=limit, before_id=before_id)
            return await c.request(ops.MESSAGES_LIST, req)

        reply = run_client(go)
        print_json(reply) if as_json else _messages(reply.messages, "no messages")

    @app.command("vacuum")
    def vacuum(
        dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be deleted."),
        days: float = typer.Option(None, "--days", help="Age limit (default HIVE_BROKER_RETENTION_DAYS or 30)."),
    ) -> None:
        """Delete old acked messages from broker.sqlite.

        Acked messages older than the retention limit go; unread ones stay.
        """
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
