"""The swarm's cost ledger: `ledger.sqlite` (pure sqlite functions; docs/costs.md).

One row per turn (`turns`, keyed by the harness's turn id, so a row delivered
twice counts once), the operator's budgets (`budgets`, scope = agent name or
`*` for the swarm) and the budget alerts already sent (`budget_alerts`, one
per scope, period and level). Periods are UTC calendar days, ISO weeks
(Monday 00:00) and months.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from hivewire.migrations import DatabaseSpec, Migration, Migrations
from hivewire.names import MANAGER
from hivewire.wire import broker as w
from hivewire.wire.agent import TurnStats

SWARM = "*"
LEVELS = (0.8, 1.0)  # an operator-inbox message when a budget reaches each

LEDGER_SQL = """
CREATE TABLE IF NOT EXISTS turns (
    turn_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    session TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    result_kind TEXT NOT NULL DEFAULT 'ok',
    ts REAL NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    model_costs_json TEXT NOT NULL DEFAULT '{}',
    stream_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS turns_agent_ts ON turns(agent, ts);
CREATE INDEX IF NOT EXISTS turns_ts ON turns(ts);
CREATE TABLE IF NOT EXISTS budgets (
    scope TEXT PRIMARY KEY,
    usd REAL,
    tokens INTEGER,
    per TEXT NOT NULL CHECK (per IN ('day', 'week', 'month')),
    include_manager INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS budget_alerts (
    scope TEXT NOT NULL,
    period_start REAL NOT NULL,
    level REAL NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (scope, period_start, level)
);
"""
MIGRATIONS = Migrations("ledger", [
    Migration(1, "ledger", LEDGER_SQL, "DROP TABLE budget_alerts; DROP TABLE budgets; DROP TABLE turns"),
])


def database_spec(path: Any) -> DatabaseSpec:
    return DatabaseSpec("ledger", path, MIGRATIONS)


# --- periods ------------------------------------------------------------------------
def period(per: str, now: float) -> tuple[float, float]:
    """[start, end) of the UTC day, ISO week or month holding `now`."""
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    day = dt.datetime(t.year, t.month, t.day, tzinfo=dt.UTC)
    if per == "day":
        start, end = day, day + dt.timedelta(days=1)
    elif per == "week":
        start = day - dt.timedelta(days=t.weekday())
        end = start + dt.timedelta(days=7)
    elif per == "month":
        start = dt.datetime(t.year, t.month, 1, tzinfo=dt.UTC)
        end = dt.datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=dt.UTC)
    else:
        raise ValueError(f"unknown period {per!r}")
    return start.timestamp(), end.timestamp()


# --- ingest -------------------------------------------------------------------------
def row_values(agent: str, row: TurnStats, seq: int) -> tuple[Any, ...]:
    tokens = row.input_tokens + row.output_tokens + row.cache_read_input_tokens + row.cache_creation_input_tokens
    costs = {str(k): float(v) for k, v in row.model_costs.items() if v > 0}
    return (row.turn_id or f"js-{seq}", agent, row.session if not agent else "", row.model, row.result_kind,
            row.ended_at, max(0.0, row.cost_usd), max(0, tokens), json.dumps(costs, sort_keys=True), seq)


def ingest(conn: sqlite3.Connection, values: Iterable[tuple[Any, ...]]) -> int:
    """Insert turn rows; one already there (same turn id) is ignored. Returns how many were new."""
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO turns(turn_id, agent, session, model, result_kind, ts, cost_usd, "
                     "tokens, model_costs_json, stream_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
    return conn.total_changes - before


# --- budgets ------------------------------------------------------------------------
def _budget(r: sqlite3.Row) -> w.Budget:
    return w.Budget(agent=None if r["scope"] == SWARM else r["scope"], usd=r["usd"], tokens=r["tokens"],
                    per=r["per"], include_manager=bool(r["include_manager"]), updated_at=r["updated_at"])


def set_budget(conn: sqlite3.Connection, scope: str, req: w.BudgetSetRequest, now: float) -> w.Budget:
    conn.execute("INSERT INTO budgets(scope, usd, tokens, per, include_manager, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                 "ON CONFLICT(scope) DO UPDATE SET usd = excluded.usd, tokens = excluded.tokens, per = excluded.per, "
                 "include_manager = excluded.include_manager, updated_at = excluded.updated_at",
                 (scope, req.usd, req.tokens, req.per, int(req.include_manager), now))
    return get_budgets(conn, scope)[0]


def clear_budget(conn: sqlite3.Connection, scope: str) -> bool:
    return conn.execute("DELETE FROM budgets WHERE scope = ?", (scope,)).rowcount > 0


def get_budgets(conn: sqlite3.Connection, scope: str | None = None) -> list[w.Budget]:
    if scope is None:
        rows = conn.execute("SELECT * FROM budgets ORDER BY scope = '*' DESC, scope").fetchall()
    else:
        rows = conn.execute("SELECT * FROM budgets WHERE scope = ?", (scope,)).fetchall()
    return [_budget(r) for r in rows]


def applies(b: w.Budget, agent: str) -> bool:
    if b.agent is not None:
        return b.agent == agent
    return agent != MANAGER or b.include_manager


def spent(conn: sqlite3.Connection, agent: str | None, start: float, end: float,
          include_manager: bool = True) -> tuple[float, int]:
    """(dollars, tokens) of one agent's turns, or the swarm's (agent None), in [start, end)."""
    if agent is not None:
        r = conn.execute("SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(tokens), 0) FROM turns "
                         "WHERE agent = ? AND ts >= ? AND ts < ?", (agent, start, end)).fetchone()
    else:
        skip = "" if include_manager else " AND agent != 'manager'"
        r = conn.execute("SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(tokens), 0) FROM turns "
                         f"WHERE ts >= ? AND ts < ?{skip}", (start, end)).fetchone()
    return float(r[0]), int(r[1])


def fraction(b: w.Budget, usd: float, tokens: int) -> float:
    parts = [usd / b.usd if b.usd else (1.0 if b.usd == 0 else 0.0),
             tokens / b.tokens if b.tokens else (1.0 if b.tokens == 0 else 0.0)]
    return max(parts)


def status(conn: sqlite3.Connection, b: w.Budget, now: float, asker: str | None = None) -> w.BudgetStatus:
    start, end = period(b.per, now)
    usd, tokens = spent(conn, b.agent, start, end, b.include_manager)
    mine = spent(conn, asker, start, end) if asker is not None else (0.0, 0)
    f = fraction(b, usd, tokens)
    return w.BudgetStatus(budget=b, period_start=start, period_end=end, spent_usd=usd, spent_tokens=tokens,
                          fraction=f, over=f >= 1.0, agent_spent_usd=mine[0], agent_spent_tokens=mine[1])


def for_agent(conn: sqlite3.Connection, agent: str, now: float) -> list[w.BudgetStatus]:
    """Every budget that applies to `agent`, with this period's spend (and the agent's part of it)."""
    return [status(conn, b, now, agent) for b in get_budgets(conn) if applies(b, agent)]


def new_alerts(conn: sqlite3.Connection, agents: set[str], now: float) -> list[w.BudgetStatus]:
    """Budgets touching `agents` that crossed a level not yet alerted this period; records each
    (so a level alerts once per period), returned with the level in `fraction` rounded down."""
    out: list[w.BudgetStatus] = []
    for b in get_budgets(conn):
        if b.agent is not None and b.agent not in agents:
            continue
        if b.agent is None and not any(applies(b, a) for a in agents):
            continue
        st = status(conn, b, now)
        for level in LEVELS:
            if st.fraction >= level and conn.execute(
                    "INSERT OR IGNORE INTO budget_alerts(scope, period_start, level, sent_at) VALUES (?, ?, ?, ?)",
                    (b.agent or SWARM, st.period_start, level, now)).rowcount:
                out.append(w.BudgetStatus(**{**_fields(st), "fraction": level}))
    return out


def _fields(st: w.BudgetStatus) -> dict[str, Any]:
    return {f: getattr(st, f) for f in st.__struct_fields__}


# --- costs ---------------------------------------------------------------------------
DAY = "strftime('%Y-%m-%d', t.ts, 'unixepoch')"
KEYS = {"agent": "t.agent", "session": "t.session", "day": DAY, "model": "m.model"}
MODEL_CTE = ("WITH m AS (SELECT t.turn_id, j.key AS model, j.value AS usd "
             "FROM turns t, json_each(t.model_costs_json) j WHERE {where} "
             "UNION ALL SELECT t.turn_id, t.model, t.cost_usd FROM turns t "
             "WHERE t.model_costs_json = '{{}}' AND {where}) ")


def costs(conn: sqlite3.Connection, req: w.CostsRequest) -> w.CostsReply:
    """Dollars, tokens and turns grouped by `req.by` (and then `req.then`: the dashboard's day-by-model chart)."""
    then = req.then if req.then != req.by else None
    where, args = ["1 = 1"], []
    if req.since is not None:
        where.append("t.ts >= ?")
        args.append(req.since)
    if req.until is not None:
        where.append("t.ts < ?")
        args.append(req.until)
    if req.agent is not None:
        where.append("t.agent = ?")
        args.append(req.agent)
    if req.by == "session":
        where.append("t.session != ''")
    cond = " AND ".join(where)
    groups = [req.by] + ([then] if then else [])
    k = [KEYS[g] for g in groups]
    sel = ", ".join(f"{e} AS k{i}" for i, e in enumerate(k))
    if "model" in groups:
        sql = (MODEL_CTE.format(where=cond) + f"SELECT {sel}, SUM(m.usd), "
               "SUM(CASE WHEN m.model = t.model THEN t.tokens ELSE 0 END), COUNT(DISTINCT t.turn_id) "
               f"FROM m JOIN turns t ON t.turn_id = m.turn_id GROUP BY {', '.join(k)}")
        rows = conn.execute(sql, [*args, *args]).fetchall()
    else:
        sql = (f"SELECT {sel}, SUM(t.cost_usd), SUM(t.tokens), COUNT(*) FROM turns t WHERE {cond} "
               f"GROUP BY {', '.join(k)}")
        rows = conn.execute(sql, args).fetchall()
    out = [w.CostRow(key=str(r[0] or ""), key2=str(r[1] or "") if then else "", cost_usd=float(r[-3] or 0),
                     tokens=int(r[-2] or 0), turns=int(r[-1] or 0)) for r in rows]
    out.sort(key=lambda c: (c.key, c.key2) if req.by == "day" else (-c.cost_usd, c.key, c.key2))
    tot = conn.execute(f"SELECT COALESCE(SUM(t.cost_usd), 0), COALESCE(SUM(t.tokens), 0), COUNT(*) FROM turns t "
                       f"WHERE {cond}", args).fetchone()
    return w.CostsReply(by=req.by, since=req.since, rows=out, total_usd=float(tot[0]), total_tokens=int(tot[1]),
                        turns=int(tot[2]))
