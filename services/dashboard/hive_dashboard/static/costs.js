// Costs and budgets (docs/costs.md): the home page's spend card and chart, the agent page's
// spend panel (dollars and tokens, labelled: last turn, today UTC, all time), budget form, Resume.
"use strict";
(() => {
  const { h, api, toast } = hive;
  const $ = (id) => document.getElementById(id);
  const usd = (v) => (v == null ? "?" : "$" + Number(v).toFixed(v >= 1 ? 2 : 4));
  const tok = (v) => (v == null ? "?" : v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e3 ? (v / 1e3).toFixed(1) + "k" : String(v));
  const act = async (method, path, body, msg) => {
    try { await api(method, path, body); toast(msg, "ok"); } catch (e) { toast(String(e.message || e), "error"); }
  };
  const limit = (b) => [b.usd != null ? usd(b.usd) : null, b.tokens != null ? tok(b.tokens) + " tokens" : null].filter(Boolean).join(" + ");
  // the budgets that hold an agent back: its own, and the swarm's (which leaves the manager out unless told)
  const appliesTo = (b, name) => b.agent === name || (b.agent == null && (name !== "manager" || b.include_manager));
  const num = (input) => (input.value.trim() === "" ? null : Number(input.value));

  async function home() {
    const box = $("spend");
    if (!box) return;
    const [today, budgets, byModel, byAgent] = await Promise.all([
      api("GET", "/api/costs?by=agent&days=1"), api("GET", "/api/budgets"),
      api("GET", "/api/costs/chart?by=model&days=14"), api("GET", "/api/costs/chart?by=agent&days=14")]);
    const cap = {};
    for (const b of budgets.budgets) cap[b.budget.agent || "*"] = b;
    const rows = today.rows.map((r) => {
      const b = cap[r.key];
      return h("tr", {}, h("td", {}, r.key || "(sessions)"), h("td", {}, usd(r.cost_usd)), h("td", {}, tok(r.tokens) + " tokens"),
        h("td", {}, b ? `${Math.round(b.fraction * 100)}% of ${limit(b.budget)} / ${b.budget.per}` + (b.over ? " · OVER" : "") : "no budget"));
    });
    const swarm = cap["*"];
    box.replaceChildren(
      h("p", {}, `today (UTC): ${usd(today.total_usd)} · ${tok(today.total_tokens)} tokens · ${today.turns} turns` +
        (swarm ? ` · swarm budget ${Math.round(swarm.fraction * 100)}% used` : "")),
      rows.length ? h("table", {}, h("thead", {}, h("tr", {}, ["agent", "dollars today", "tokens today", "budget"].map((c) => h("th", {}, c)))), h("tbody", {}, rows)) : h("p", { class: "empty" }, "no turns today"));
    const charts = $("spend-charts");
    if (charts) {
      charts.innerHTML = "<h3>spend per day by model</h3>" + byModel.svg + "<h3>spend per day by agent</h3>" + byAgent.svg;
    }
  }

  async function agentPage() {
    const box = $("spend-panel");
    if (!box) return;
    const name = box.dataset.agent;
    const enc = encodeURIComponent(name);
    const [s, budgets] = await Promise.all([api("GET", `/api/agents/${enc}/spend`), api("GET", "/api/budgets")]);
    const line = (label, v) => h("tr", {}, h("td", {}, label), h("td", {}, usd(v && v.usd)), h("td", {}, tok(v && v.tokens) + " tokens"));
    const mine = budgets.budgets.filter((b) => appliesTo(b.budget, name));
    const budgetLine = (b) => h("li", { class: b.over ? "bad" : "" },
      `${b.budget.agent ? "its budget" : "swarm budget"}: ${limit(b.budget)} per ${b.budget.per} · ` +
      `${Math.round(b.fraction * 100)}% used (${usd(b.spent_usd)} · ${tok(b.spent_tokens)} tokens)` + (b.over ? " · OVER" : ""));
    const usdIn = h("input", { type: "number", step: "any", min: "0", placeholder: "dollars", id: "budget-usd" });
    const tokIn = h("input", { type: "number", step: "1", min: "0", placeholder: "tokens", id: "budget-tokens" });
    const per = h("select", { id: "budget-per" }, ["day", "week", "month"].map((p) => h("option", { value: p }, p)));
    const parked = s.status === "runaway"
      ? h("p", { id: "parked", class: "bad" }, "parked: runaway (too many turns, or failed turns in a row); only the operator lifts it ",
        h("button", { type: "button", id: "resume-btn", onclick: () => act("POST", `/api/agents/${enc}/resume`, null, "resumed").then(agentPage) }, "resume"))
      : s.status === "over_budget"
        ? h("p", { id: "parked", class: "bad" }, "parked: over budget; it resumes when the budget is raised or cleared, or at the next period")
        : null;
    box.replaceChildren(
      parked,
      h("table", {}, h("thead", {}, h("tr", {}, ["", "dollars", "tokens"].map((c) => h("th", {}, c)))),
        h("tbody", {}, line("last turn", s.last_turn), line("today (UTC)", s.today), line("all time", s.all_time))),
      h("ul", { id: "budget-list" }, mine.length ? mine.map(budgetLine) : h("li", { class: "empty" }, "no budget")),
      h("form", { class: "row", id: "budget-form", onsubmit: (e) => { e.preventDefault(); act("POST", "/api/budgets", { agent: name, usd: num(usdIn), tokens: num(tokIn), per: per.value }, "budget set").then(agentPage); } },
        usdIn, tokIn, per, h("button", { type: "submit" }, "set budget"),
        h("button", { type: "button", id: "budget-clear", onclick: () => act("POST", "/api/budgets/clear", { agent: name }, "budget cleared").then(agentPage) }, "clear budget")));
  }

  const refresh = () => { home().catch(() => {}); agentPage().catch(() => {}); };
  refresh();
  setInterval(refresh, 15000);
})();
