"""Costs in the browser (issue 24): real Chromium, the dashboard as a real uvicorn process, the REAL
hive-broker with its cost ledger fed over JetStream (FAKE deployer, backup and harnesses).

- home: the spend card shows each agent's dollars and tokens today against its budget, and the
  per-day charts by model and by agent;
- agent page: dollars and tokens, labelled, for the last turn, today and all time; a budget set in
  the form is applied (the broker has it, the panel shows it and that it is over) and cleared;
- a runaway-parked agent says so and its Resume button lifts the park.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.common import Empty
from tests.dashboard.conftest import Dashboard, Stack
from tests.dashboard.test_costs_api import fresh_ledger, ledger_stack, seeded  # noqa: F401  (fixtures)
from tests.dashboard.test_e2e import log_in
from tests.support.procs import wait_for

pytestmark = pytest.mark.e2e


async def budgets(nats: NatsTransport) -> dict[str | None, wb.BudgetStatus]:
    rep = await HiveClient(nats).request(ops.BUDGET_SHOW, Empty())
    return {b.budget.agent: b for b in rep.budgets}


async def test_home_spend_card_shows_today_against_budgets(
        page: Page, dashboard: Dashboard, seeded: dict[str, Any], nats_transport: NatsTransport) -> None:  # noqa: F811
    await HiveClient(nats_transport).request(ops.BUDGET_SET, wb.BudgetSetRequest(agent="alice", usd=0.5, per="day"))
    await log_in(page, dashboard)
    card = page.locator("#spend")
    await expect(card).to_contain_text("today (UTC): $0.9700 · 9.7k tokens · 4 turns")
    head = card.locator("thead th")
    await expect(head).to_have_text(["agent", "dollars today", "tokens today", "budget"])
    alice = card.locator("tbody tr", has_text="alice").locator("td")
    await expect(alice).to_have_text(["alice", "$0.4000", "4.0k tokens", "80% of $0.5000 / day"])
    manager = card.locator("tbody tr", has_text="manager").locator("td")
    await expect(manager).to_have_text(["manager", "$0.5000", "5.0k tokens", "no budget"])
    await expect(card.locator("tbody tr", has_text="(sessions)").locator("td").nth(1)).to_have_text("$0.0700")
    charts = page.locator("#spend-charts")
    await expect(charts.locator("h3")).to_have_text(["spend per day by model", "spend per day by agent"])
    await expect(charts.locator("svg.spend-chart")).to_have_count(2)
    await expect(charts.locator("svg.spend-chart").first.locator("rect title")).to_have_count(3)  # 3 day x model


async def test_agent_page_spend_budget_form(page: Page, dashboard: Dashboard, seeded: dict[str, Any],  # noqa: F811
                                            nats_transport: NatsTransport) -> None:
    await log_in(page, dashboard, "/agents/alice")
    panel = page.locator("#spend-panel")
    await expect(panel.locator("thead th")).to_have_text(["", "dollars", "tokens"])
    rows = panel.locator("tbody tr")
    await expect(rows.nth(0).locator("td")).to_have_text(["last turn", "$0.0123", "120.0k tokens"])
    await expect(rows.nth(1).locator("td")).to_have_text(["today (UTC)", "$0.4000", "4.0k tokens"])
    await expect(rows.nth(2).locator("td")).to_have_text(["all time", "$1.40", "14.0k tokens"])
    await expect(page.locator("#budget-list")).to_have_text("no budget")
    await expect(page.locator("#parked")).to_have_count(0)

    # a budget below today's spend, from the form: the broker has it, the panel shows it over
    await page.fill("#budget-usd", "0.3")
    await page.select_option("#budget-per", "day")
    await page.click("#budget-form button[type=submit]")
    await expect(page.locator("#toast")).to_have_text("budget set")
    await expect(page.locator("#budget-list li")).to_have_text(
        "its budget: $0.3000 per day · 133% used ($0.4000 · 4.0k tokens) · OVER")
    got = (await budgets(nats_transport))["alice"]
    assert (got.budget.usd, got.budget.tokens, got.budget.per, got.over) == (0.3, None, "day", True)

    # a token budget per week (dollars left empty) replaces it (the week may hold the older turn too)
    await page.fill("#budget-usd", "")
    await page.fill("#budget-tokens", "100000")
    await page.select_option("#budget-per", "week")
    await page.click("#budget-form button[type=submit]")
    await expect(page.locator("#budget-list li")).to_have_text(
        re.compile(r"^its budget: 100\.0k tokens per week · (4|14)% used \(\$(0\.4000|1\.40) · (4|14)\.0k tokens\)$"))
    got = (await budgets(nats_transport))["alice"]
    assert (got.budget.usd, got.budget.tokens, got.budget.per, got.over) == (None, 100_000, "week", False)

    await page.click("#budget-clear")
    await expect(page.locator("#toast")).to_have_text("budget cleared")
    await expect(page.locator("#budget-list")).to_have_text("no budget")
    assert await budgets(nats_transport) == {}


async def test_resume_button_lifts_a_runaway_park(page: Page, dashboard: Dashboard,
                                                  ledger_stack: Stack) -> None:  # noqa: F811
    alice = ledger_stack.harnesses["alice"]
    alice.status = "runaway"
    await log_in(page, dashboard, "/agents/alice")
    parked = page.locator("#parked")
    await expect(parked).to_contain_text("parked: runaway")
    await page.click("#resume-btn")
    await expect(page.locator("#toast")).to_have_text("resumed")
    await expect(parked).to_have_count(0)  # the panel looked again: online

    async def resumed() -> bool:
        return alice.controls == ["resume"] and alice.status == "online"

    await wait_for(resumed)
