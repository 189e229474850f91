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
        h("td", {}, b ? `${Math.round(b.fraction * 100)}% of ${b.budget.usd != null ? usd(b.budget.usd) : tok(b.budget.tokens) + " tokens"} / ${b.budget.per}` + (b.over ? " · OVER" : "") : "no budget"));
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
    const s = await api("GET", `/api/agents/${encodeURIComponent(name)}/spend`);
    const line = (label, v) => h("tr", {}, h("td", {}, label), h("td", {}, usd(v && v.usd)), h("td", {}, tok(v && v.tokens) + " tokens"));
    const usdIn = h("input", { type: "number", step: "0.01", min: "0", placeholder: "dollars", id: "budget-usd" });
    const per = h("select", { id: "budget-per" }, ["day", "week", "month"].map((p) => h("option", { value: p }, p)));
    box.replaceChildren(
      h("table", {}, h("thead", {}, h("tr", {}, ["", "dollars", "tokens"].map((c) => h("th", {}, c)))),
        h("tbody", {}, line("last turn", s.last_turn), line("today (UTC)", s.today), line("all time", s.all_time))),
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); act("POST", "/api/budgets", { agent: name, usd: Number(usdIn.value), per: per.value }, "budget set").then(agentPage); } },
        usdIn, per, h("button", { type: "submit" }, "set budget"),
        h("button", { type: "button", onclick: () => act("POST", "/api/budgets/clear", { agent: name }, "budget cleared").then(agentPage) }, "clear budget"),
        h("button", { type: "button", id: "resume-btn", onclick: () => act("POST", `/api/agents/${encodeURIComponent(name)}/resume`, null, "resumed") }, "resume (runaway)")));
  }

  const refresh = () => { home().catch(() => {}); agentPage().catch(() => {}); };
  refresh();
  setInterval(refresh, 15000);
})();
