"""`hive costs` and `hive budget set|show|clear`: the cost ledger's CLI (docs/costs.md)."""

from __future__ import annotations

import re
import time
from typing import TypeVar

import typer

from hivewire.cli.app import JSON_HELP, console, print_json, print_rows, run_client
from hivewire.service import HiveClient
from hivewire.wire import broker as w
from hivewire.wire import ops
from hivewire.wire.common import Empty
from hivewire.wire.op import Op

UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
JSON = typer.Option(False, "--json", help=JSON_HELP)
Req = TypeVar("Req")
Rep = TypeVar("Rep")


def parse_since(text: str, now: float | None = None) -> float:
    """`30m`, `12h`, `7d`, `2w` ago, or a UTC date `YYYY-MM-DD`."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([mhdw])", text.strip())
    if m:
        return now - float(m.group(1)) * UNITS[m.group(2)]
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%d")) - time.timezone
    except ValueError:
        raise typer.BadParameter(f"{text!r}: use a duration like 30m, 12h, 7d, 2w or a date YYYY-MM-DD") from None


def _call(op: Op[Req, Rep], req: Req) -> Rep:
    async def go(c: HiveClient) -> Rep:
        return await c.request(op, req)

    return run_client(go)


def _limit(b: w.Budget) -> str:
    return " + ".join(x for x in (f"${b.usd:g}" if b.usd is not None else "",
                                  f"{b.tokens:,} tokens" if b.tokens is not None else "") if x)


def _status_line(st: w.BudgetStatus) -> list[str]:
    b = st.budget
    scope = b.agent or ("swarm (manager too)" if b.include_manager else "swarm (not manager)")
    state = "OVER" if st.over else ("80%+" if st.fraction >= 0.8 else "ok")
    return [scope, f"{_limit(b)} per {b.per}", f"${st.spent_usd:.4f}", f"{st.spent_tokens:,}",
            f"{st.fraction:.0%}", state]


def register(app: typer.Typer) -> None:
    budget = typer.Typer(help="Spending caps per agent or for the swarm (UTC day, week or month).",
                         short_help="Spending caps per agent or for the swarm.",
                         no_args_is_help=True)
    app.add_typer(budget, name="budget")

    @app.command("costs", short_help="What turns cost, in dollars and tokens.")
    def costs(
        by: str = typer.Option("agent", "--by", help="Group by agent, model, day or session."),
        since: str = typer.Option(None, "--since", help="Only turns since then: 30m, 12h, 7d, 2w or YYYY-MM-DD."),
        agent: str = typer.Option(None, "--agent", help="Only this agent's turns."),
        as_json: bool = JSON,
    ) -> None:
        """What turns cost, in dollars (the CLI's own prices) and billed tokens, from the ledger."""
        if by not in ("agent", "model", "day", "session"):
            raise typer.BadParameter("--by takes agent, model, day or session")
        req = w.CostsRequest(by=by, since=parse_since(since) if since else None, agent=agent)  # type: ignore[arg-type]
        rep = _call(ops.LEDGER_COSTS, req)
        if as_json:
            print_json(rep)
            return
        label = {"agent": "agent", "model": "model", "day": "day (UTC)", "session": "session"}[by]
        none = {"agent": "(sessions)", "session": "-"}.get(by, "-")
        print_rows((label, "dollars", "tokens", "turns"),
                   ([r.key or none, f"${r.cost_usd:.4f}", f"{r.tokens:,}", str(r.turns)] for r in rep.rows),
                   empty="no turns recorded" + (" in that time" if since else ""))
        if rep.rows:
            console.print(f"total ${rep.total_usd:.4f}, {rep.total_tokens:,} tokens, {rep.turns} turns",
                          markup=False, highlight=False)

    @budget.command("set")
    def budget_set(
        agent: str = typer.Argument(None, help="The agent (or use --swarm)."),
        swarm: bool = typer.Option(False, "--swarm", help="The swarm-wide budget (every agent but manager)."),
        usd: float = typer.Option(None, "--usd", help="Dollars per period."),
        tokens: int = typer.Option(None, "--tokens", help="Billed tokens per period."),
        per: str = typer.Option("day", "--per", help="day, week or month (UTC)."),
        include_manager: bool = typer.Option(False, "--include-manager", help="A swarm budget parks manager too."),
        as_json: bool = JSON,
    ) -> None:
        """Cap what an agent (or the swarm) may spend; at the cap agents park until it is raised or the period ends."""
        if per not in ("day", "week", "month"):
            raise typer.BadParameter("--per takes day, week or month")
        req = w.BudgetSetRequest(agent=agent, swarm=swarm, usd=usd, tokens=tokens, per=per,  # type: ignore[arg-type]
                                 include_manager=include_manager)
        st = _call(ops.BUDGET_SET, req)
        if as_json:
            print_json(st)
            return
        scope, limit, spent, _, frac, state = _status_line(st)
        console.print(f"budget {scope}: {limit}; spent {spent} this period ({frac}, {state})",
                      markup=False, highlight=False)

    @budget.command("show")
    def budget_show(as_json: bool = JSON) -> None:
        """Every budget with this period's spend."""
        rep = _call(ops.BUDGET_SHOW, Empty())
        if as_json:
            print_json(rep)
            return
        print_rows(("scope", "budget", "dollars", "tokens", "used", "state"),
                   (_status_line(st) for st in rep.budgets), empty="no budgets")

    @budget.command("clear")
    def budget_clear(
        agent: str = typer.Argument(None, help="The agent (or use --swarm)."),
        swarm: bool = typer.Option(False, "--swarm", help="The swarm-wide budget."),
    ) -> None:
        """Remove a budget; agents it parked resume within seconds."""
        rep = _call(ops.BUDGET_CLEAR, w.BudgetClearRequest(agent=agent, swarm=swarm))
        who = "swarm" if swarm else agent
        console.print(f"budget {who}: cleared" if rep.ok else f"budget {who}: there was none",
                      markup=False, highlight=False)
