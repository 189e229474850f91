/* hive dashboard: one agent's page. History first (ctl.history), then live events over SSE. */
"use strict";
(() => {
  const { h, api, act, fmtTokens, fmtDur, fmtTime, label, labelClass, labelText } = hive;
  const name = document.querySelector('meta[name="agent"]').content;
  const base = "/api/agents/" + name;
  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const st = { presence: null, status: null, model: null, ctx: null, cost: null, window: 200000, unread: 0, loginUrl: null,
    until: null, plan: {} };  // until, plan: AgentView.rate_limited_until and .plan (usage limits)
  let lastId = -1;              // highest LiveEvent id rendered (dedupes history vs live)
  let pending = [];             // live events that arrive before the history is in
  let historyLoaded = false;
  const typing = { block: null, el: null, text: "", ended: new Set() };  // partial text streaming in
  const FOLD = 120;

  // --- badges --------------------------------------------------------------------
  function paintBadges() {
    const l = label(st.presence, st.status);
    const p = $("b-presence");
    p.textContent = labelText(l);
    p.className = "badge presence " + labelClass(l);
    $("b-model").textContent = "model · " + (st.model || "?");
    $("b-host").hidden = !st.host;  // the host that runs it (issue 26)
    $("b-host").textContent = "host · " + st.host + (st.hostLost ? " (lost)" : "");
    $("b-host").className = "badge " + (st.hostLost ? "bad" : "dim");
    if (st.ctx === null || st.ctx === undefined) { $("b-ctx").textContent = "ctx · –"; $("b-ctx").className = "badge dim"; }
    else {
      const pct = Math.round(100 * st.ctx / (st.window || 200000));
      $("b-ctx").textContent = "ctx · " + fmtTokens(st.ctx) + " (" + pct + "%)";
      $("b-ctx").className = "badge " + (pct >= 75 ? "bad" : pct >= 50 ? "warnc" : "");
    }
    $("b-cost").textContent = "last turn · " + fmtTokens(st.cost) + " tokens";
    $("b-unread").hidden = !st.unread;
    $("b-unread").textContent = st.unread + " unread";
    $("b-unread").className = "badge unread";
    paintLimits();
    const needsLogin = st.status === "needs_login";
    $("login-panel").hidden = !needsLogin;
    if (st.loginUrl) { $("login-url").href = st.loginUrl; $("login-url").textContent = st.loginUrl; $("login-url-row").hidden = false; }
    $("prompt").disabled = needsLogin;
  }

  /* The countdown to the end of a usage-limit park (ticked by common.js) and every plan window. */
  function paintLimits() {
    const parked = st.until && (!st.presence || st.presence.alive);
    const cd = $("b-limit");
    if (parked) cd.replaceWith(hive.countdown(st.until, "b-limit")); else { cd.hidden = true; delete cd.dataset.until; }
    const windows = hive.planBadges(st.plan, false);
    $("plan").replaceChildren(...windows);
    $("limits").hidden = !windows.length;
  }
  async function loadLimits() {
    let a;
    try { a = await api("GET", base); } catch (e) { return; }
    st.until = a.rate_limited_until; st.plan = a.plan;
    paintBadges();
  }
  const refreshLimits = hive.debounce(loadLimits, 300);

  // --- the terminal --------------------------------------------------------------
  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  function line(cls, ...kids) { return h("div", { class: "ln " + cls }, ...kids); }
  function short(v, n) { const s = typeof v === "string" ? v : JSON.stringify(v); return s.length > n ? s.slice(0, n) + "…" : s; }

  function toolLine(p) {
    const tool = p.name || p.tool || "tool", i = p.input || p.args || {};
    const t = tool.replace(/^mcp__hive__/, "hive.");
    let what;
    if (tool === "Bash") what = ["$ ", i.command || ""];
    else if (["Read", "Write", "Edit", "MultiEdit", "NotebookEdit"].includes(tool)) what = [i.file_path || i.path || ""];
    else if (tool === "Grep" || tool === "Glob") what = [i.pattern || "", i.path ? " in " + i.path : ""];
    else if (tool === "WebFetch" || tool === "WebSearch") what = [i.url || i.query || ""];
    else if (tool === "TodoWrite") what = [(i.todos || []).length + " todos"];
    else if (t === "hive.send") what = ["→ ", i.to || "?", ": ", short(i.body || "", 200)];
    else if (t === "hive.ask") what = ["? ", short(i.question || "", 200), i.options && i.options.length ? " [" + i.options.join(" | ") + "]" : ""];
    else if (t === "hive.answer") what = [i.question_id || "", ": ", short(i.answer || "", 200)];
    else if (t === "hive.remind") what = ["remind: ", short(i.body || "", 160)];
    else what = [short(i, 200)];
    return line("tool", h("span", { class: "tool-name" }, "⚙ " + t), " ", h("span", { class: "tool-arg" }, ...what));
  }

  /* A tool's result for people: JSON pretty-printed, a JSON-encoded string unwrapped (no \" or \n escapes). */
  function readable(v) {
    for (let i = 0; i < 3 && typeof v === "string"; i++) {
      const t = v.trim();
      if (!/^[[{"]/.test(t)) break;
      try { v = JSON.parse(t); } catch (e) { break; }
    }
    return typeof v === "string" ? v : JSON.stringify(v, null, 2);
  }

  function resultLine(p) {
    let text = p.content ?? p.output ?? p.text ?? p.result ?? "";
    if (Array.isArray(text)) text = text.map((c) => (c && c.text) || (typeof c === "string" ? c : JSON.stringify(c))).join("\n");
    text = readable(text);
    const cls = "result" + (p.is_error ? " err" : "");
    if (text.length <= FOLD && !text.includes("\n")) return line(cls, "↳ ", text);
    return line(cls, h("details", {}, h("summary", {}, "↳ " + text.slice(0, FOLD).replace(/\n/g, " ") + "… (" + text.length + " chars)"), h("pre", {}, text)));
  }

  function render(e, live) {
    const p = e.payload || {};
    switch (e.kind) {
      case "turn_start":
        $("banner").classList.add("active");
        if ("unread" in p) st.unread = p.unread;
        return line("turn", "── turn · " + (p.wake_from || p.reason || "wake") + (p.unread ? " · " + p.unread + " unread" : "") + " · " + fmtTime(e.ts) + " ──");
      case "turn_end":
        $("banner").classList.remove("active");
        const end = line("turn", "── end · " + (p.result_kind || p.result || "done") + (p.duration_ms ? " · " + fmtDur(p.duration_ms) : "") + " ──");
        // a turn that did not end ok says why (the CLI's error text, kept in the turn's note)
        if (p.note && (p.result_kind || "ok") !== "ok") return h("div", {}, end, line("error", "✗ " + String(p.note).slice(0, 2000)));
        return end;
      case "assistant_text": return line("text", p.text || "");
      case "thinking": return line("thinking", p.text ? "✻ " + p.text : "✻ thinking…");
      case "tool_use": return toolLine(p);
      case "tool_result": return resultLine(p);
      case "note": return line("note", "· " + (p.text || p.note || JSON.stringify(p)));
      case "error": return line("error", "✗ " + (p.kind ? p.kind + ": " : "") + (p.text || p.message || p.error || JSON.stringify(p)));
      // Badges come from the agent's current state (loadState) and live changes; the history's old
      // events are shown, never replayed into them (a needs_login from an earlier instance is not now).
      case "status_changed":
        if (live) {
          st.status = hive.eventStatus(p.status) || st.status;
          if (p.login_url || p.url) st.loginUrl = p.login_url || p.url;
        }
        return line("note", "· status → " + p.status + (p.reason === "harness_started" ? " (harness started)" : ""));
      case "model_changed": if (live) st.model = p.model; return line("note", "· model → " + p.model);
      case "token_usage_changed":
        if (live) { if ("ctx" in p) st.ctx = p.ctx; if ("cost" in p) st.cost = p.cost; if (p.context_window) st.window = p.context_window; }
        return null;
      case "turn_state_changed": return live && p.state === "compacting" ? line("note", "· compacting…") : null;
      default: return line("note", "· " + e.kind);
    }
  }

  // --- live typing: hive.agent.<a>.typing, replaced by the block's assistant_text ----------
  function typed(t) {
    if (!t || typing.ended.has(t.block)) return;
    if (typing.block !== t.block) {
      dropTyping();
      typing.block = t.block; typing.text = "";
      typing.el = line("text typing", "");
    }
    if (t.offset > typing.text.length) typing.text += "… ";  // joined mid-block: some text went by
    typing.text += t.text;
    const stick = atBottom();
    typing.el.textContent = typing.text;
    if (!typing.el.isConnected) log.append(typing.el);
    if (stick) log.scrollTop = log.scrollHeight;
  }
  function dropTyping(done) {
    if (typing.el) typing.el.remove();
    if (done && typing.block) { typing.ended.add(typing.block); if (typing.ended.size > 64) typing.ended.clear(); }
    typing.block = null; typing.el = null; typing.text = "";
  }

  function append(e, live) {
    if (e.id <= lastId) return;  // already shown (history and live overlap)
    // the final text replaces it; a turn that ends (or a new one, after a crash) takes an unfinished one away
    if (live && ["assistant_text", "turn_end", "turn_start"].includes(e.kind)) dropTyping(true);
    lastId = e.id;
    const stick = atBottom();
    const el = render(e, live);
    if (el) { el.dataset.id = e.id; el.dataset.kind = e.kind; log.append(el); }
    while (log.childElementCount > 3000) log.firstElementChild.remove();
    if (stick || !live) log.scrollTop = log.scrollHeight;
    paintBadges();
  }

  function sys(text, cls) { log.append(line(cls || "sys", text)); log.scrollTop = log.scrollHeight; }

  // --- data ----------------------------------------------------------------------
  async function loadState() {
    try {
      const a = await api("GET", base);
      Object.assign(st, { presence: a.presence, status: a.status, model: a.model, ctx: a.ctx, cost: a.cost, unread: a.unread, loginUrl: a.login_url,
        until: a.rate_limited_until, plan: a.plan, host: a.host, hostLost: a.host_lost });
      if (a.context_window) st.window = a.context_window;
      paintBadges();
    } catch (e) { sys("state unavailable: " + e.message, "error"); }
  }

  async function loadHistory() {
    try {
      const hist = await api("GET", base + "/history?limit=500");
      if (hist.source === "files") sys("the agent's harness does not answer: its history as last written to its files on the host", "note offline-history");
      for (const e of hist.events) append(e, false);
      if (!hist.events.length) sys("no events yet");
    } catch (e) { sys("history unavailable: " + e.message, "error"); }
    historyLoaded = true;
    for (const e of pending) append(e, true);
    pending = [];
  }

  async function loadStats() {
    let s;
    try { s = await api("GET", base + "/stats"); } catch (e) { return; }
    const m = s.summary;
    const cell = (k, v) => h("div", { class: "stat" }, h("div", { class: "stat-v" }, v), h("div", { class: "stat-k" }, k));
    $("stats-summary").replaceChildren(cell("turns", m.turns), cell("ok / failed", m.ok + " / " + m.failed),
      cell("mean duration", m.turns ? fmtDur(m.mean_duration_ms) : "–"), cell("input tokens", fmtTokens(m.input_tokens)),
      cell("output tokens", fmtTokens(m.output_tokens)), cell("cache read", fmtTokens(m.cache_read_input_tokens)),
      cell("tool calls", m.tool_calls), cell("last ctx", m.last_ctx ? fmtTokens(m.last_ctx) : "–"));
    const tpl = document.createElement("template");
    tpl.innerHTML = s.chart_svg;  // generated by the dashboard from numbers only
    $("chart").replaceChildren(tpl.content);
    const rows = s.turns.slice(-15).reverse().map((t) => h("tr", {},
      h("td", {}, fmtTime(t.started_at)), h("td", {}, t.wake_from), h("td", {}, h("span", { class: "rk rk-" + t.result_kind }, t.result_kind)),
      h("td", {}, fmtDur(t.duration_ms)), h("td", {}, fmtTokens(t.last_input_tokens + t.last_cache_read_input_tokens + t.last_cache_creation_input_tokens)),
      h("td", {}, fmtTokens(t.input_tokens + t.output_tokens + t.cache_read_input_tokens + t.cache_creation_input_tokens)), h("td", {}, t.tool_call_count)));
    $("turns").replaceChildren(rows.length ? h("table", { class: "turns" }, h("thead", {}, h("tr", {}, ["started", "wake", "result", "duration", "ctx", "cost", "tools"].map((c) => h("th", {}, c)))), h("tbody", {}, rows)) : "");
  }

  // --- controls ------------------------------------------------------------------
  const HELP = "/help  this help\n/cancel  cancel the running turn\n/compact  compact the session\n/model <name>  switch model\n/new-session  next turn starts a fresh session\nanything else is sent to the agent as the operator's prompt";
  const ctl = {
    cancel: () => act("cancel", "POST", base + "/cancel"),
    compact: () => act("compact", "POST", base + "/compact"),
    newSession: () => confirm("Start the next turn in a fresh session? The current context is dropped.") && act("new session", "POST", base + "/new-session"),
    model: (m) => act("model " + m, "POST", base + "/model", { model: m }),
  };

  async function submit(text) {
    if (!text) return;
    if (text.startsWith("/")) {
      const [cmd, ...rest] = text.split(/\s+/);
      const arg = rest.join(" ");
      if (cmd === "/help") return sys(HELP, "help");
      if (cmd === "/cancel") return ctl.cancel();
      if (cmd === "/compact") return ctl.compact();
      if (cmd === "/new-session") return ctl.newSession();
      if (cmd === "/model") return arg ? ctl.model(arg) : sys("usage: /model <name>", "error");
      return sys("unknown command " + cmd + " (try /help)", "error");
    }
    sys("❯ " + text, "you");
    return act("prompt", "POST", base + "/prompt", { text });
  }

  $("composer").addEventListener("submit", (ev) => { ev.preventDefault(); const t = $("prompt").value.trim(); $("prompt").value = ""; submit(t); });
  $("prompt").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("composer").requestSubmit(); } });
  $("btn-cancel").addEventListener("click", ctl.cancel);
  $("btn-compact").addEventListener("click", ctl.compact);
  $("btn-new-session").addEventListener("click", ctl.newSession);
  $("model-form").addEventListener("submit", (ev) => { ev.preventDefault(); const m = $("model-input").value.trim(); if (m) ctl.model(m); });
  $("login-start").addEventListener("click", async () => { const r = await act("login", "POST", base + "/login", { action: "start" }); if (r && r.result.login_url) { st.loginUrl = r.result.login_url; paintBadges(); } });
  $("login-form").addEventListener("submit", (ev) => { ev.preventDefault(); act("login code", "POST", base + "/login", { action: "submit", code: $("login-code").value.trim() }).then(loadState); });
  $("login-cancel").addEventListener("click", () => act("login cancel", "POST", base + "/login", { action: "cancel" }));

  // Subscribe first, buffer until the history is painted, then go live.
  hive.stream("agent=" + encodeURIComponent(name), {
    event: ({ event: e }) => { if (historyLoaded) append(e, true); else pending.push(e); },
    typing: ({ typing: t }) => { if (historyLoaded) typed(t); },
    presence: (p) => {
      if (!p.alive) dropTyping(true);
      st.presence = p; st.status = hive.statusFromPresence(p) || st.status;
      if (p.alive) st.until = p.until || null;
      paintBadges(); refreshLimits();
    },
    turn: () => { loadStats(); refreshLimits(); },
    reset: () => { loadState(); loadStats(); },
  });
  loadState().then(loadHistory);
  loadStats();
})();
