/* hive dashboard: the home page. State comes from /api/overview, then SSE keeps it live. */
"use strict";
(() => {
  const { h, api, act, fmtTokens, fmtBytes, fmtDur, fmtAgo, fmtTime, label, labelClass, labelText } = hive;
  let view = null;                 // the last /api/overview
  const agents = new Map();        // name -> AgentView, patched by SSE
  const $ = (id) => document.getElementById(id);
  const empty = (text) => h("p", { class: "empty" }, text);
  const setCount = (id, n) => { $(id).textContent = n ? String(n) : ""; };

  function agentLabel(a) { return label(a.presence, a.status); }

  function ctxBadge(a) {
    if (a.ctx === null || a.ctx === undefined) return h("span", { class: "badge dim" }, "ctx · –");
    const win = a.context_window || 200000, pct = Math.round(100 * a.ctx / win);
    const cls = pct >= 75 ? "bad" : pct >= 50 ? "warnc" : "";
    return h("span", { class: "badge " + cls, title: a.ctx + " / " + win + " tokens" }, "ctx · " + fmtTokens(a.ctx) + " (" + pct + "%)");
  }

  /* the plan windows that hold the agent back or are near their limit (the agent page shows them all) */
  function limitBadges(a) {
    const b = hive.planBadges(a.plan, true);
    return b.length ? h("div", { class: "limits" }, b) : null;
  }

  function agentRow(a) {
    const l = agentLabel(a);
    const t = a.last_turn;
    return h("tr", { id: "agent-" + a.name, dataset: { agent: a.name, label: l } },
      h("td", {}, h("a", { href: "/agents/" + a.name, class: "agent-link" }, a.name),
        a.transient ? h("span", { class: "badge dim" }, a.transient + "…") : null,
        a.confined === false ? h("span", { class: "badge bad", title: "runs without a sandbox (process runtime)" }, "unconfined") : null,
        a.host_lost ? h("a", { class: "badge bad host-lost", href: "/hosts", title: "its host stopped reporting" }, "host " + a.host + " lost") : null),
      h("td", { class: "presence-cell" }, h("span", { class: "badge presence " + labelClass(l), title: a.presence ? "since " + fmtTime(a.presence.since) : "no heartbeat seen" }, labelText(l)),
        !a.presence || a.presence.alive ? hive.countdown(a.rate_limited_until) : null, limitBadges(a)),
      h("td", {}, h("span", { class: "badge dim" }, "model · " + (a.model || "?"))),
      h("td", {}, ctxBadge(a)),
      h("td", {}, h("span", { class: "badge dim", title: "billed tokens of the last turn" }, fmtTokens(a.cost) + " tokens")),
      h("td", {}, a.unread ? h("span", { class: "badge unread" }, a.unread + " unread") : h("span", { class: "muted" }, "–")),
      h("td", { class: "muted" }, t ? [h("span", { class: "rk rk-" + t.result_kind }, t.result_kind), " ", fmtDur(t.duration_ms), " · ", fmtAgo(t.ended_at)] : "no turn yet"),
      h("td", { class: "actions" },
        h("button", { class: "small ghost", onclick: () => act("restart " + a.name, "POST", `/api/agents/${a.name}/lifecycle/restart`) }, "restart"),
        h("button", { class: "small ghost danger", onclick: () => confirm(`Destroy ${a.name}? Its state is kept.`) && act("destroy " + a.name, "POST", `/api/agents/${a.name}/destroy`) }, "destroy")));
  }

  function renderAgents() {
    const list = [...agents.values()].sort((x, y) => x.name.localeCompare(y.name));
    setCount("agents-count", list.length);
    const box = $("agents");
    box.replaceChildren(list.length ? h("table", { class: "agents" },
      h("thead", {}, h("tr", {}, ["agent", "presence", "model", "ctx", "cost", "unread", "last turn", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, list.map(agentRow))) : empty("no agents yet"));
    // the send box names one agent (the manager if there is one); everyone is the last choice, and asks first
    const sel = $("compose-to"), keep = sel.value;
    sel.replaceChildren(...list.map((a) => h("option", { value: a.name }, a.name)), h("option", { value: "*" }, "* (everyone)"));
    const names = list.map((a) => a.name);
    sel.value = keep && (keep === "*" || names.includes(keep)) ? keep : names.includes("manager") ? "manager" : (names[0] || "*");
  }

  /* A live reload must not wipe what the operator is typing or ticking: an item already on the page is kept as is. */
  const kept = { approvals: new Map(), questions: new Map() };
  function keepItems(which, items, key, build) {
    const old = kept[which], now = new Map();
    const nodes = items.map((it) => { const k = key(it), el = old.get(k) || build(it); now.set(k, el); return el; });
    kept[which] = now;
    return nodes;
  }

  function renderApprovals(items) {
    setCount("approvals-count", items.length);
    $("approvals").replaceChildren(...(items.length ? keepItems("approvals", items, (v) => v.approval.approval_id, (v) => {
      const a = v.approval, diff = v.diff;
      const note = h("input", { class: "note", placeholder: "note (optional)", "aria-label": "note" });
      // a deploy whose diff is not shown in full is approved only with an explicit tick (the server checks too)
      const confirmBox = v.confirm_required ? h("input", { type: "checkbox", class: "confirm-large", "aria-label": "confirm large deploy" }) : null;
      const resolve = (decision) => act(decision + " " + a.kind, "POST", `/api/approvals/${encodeURIComponent(a.approval_id)}/resolve`,
        { decision, note: note.value || null, confirm_large: decision === "approve" && !!(confirmBox && confirmBox.checked) })
        .then((r) => { if (r) load(); });
      const base = v.diff_base ? "deployed " + v.diff_base.slice(0, 12) : "nothing deployed (whole tree)";
      return h("div", { class: "item approval", dataset: { id: a.approval_id } },
        h("div", { class: "item-head" }, h("strong", {}, a.kind.replace("_", " ")), " for ", h("a", { href: "/agents/" + a.agent }, a.agent),
          a.commit_ref ? h("code", {}, a.commit_ref.slice(0, 12)) : null,
          h("span", { class: "muted" }, " by " + a.requested_by + " · " + fmtAgo(a.requested_at))),
        a.note ? h("p", { class: "muted" }, a.note) : null,
        diff ? h("details", { class: "diff", open: true }, h("summary", {}, "what deploys: " + base + " → " + (a.commit_ref || "").slice(0, 12)), h("pre", {}, diffLines(diff))) : (a.commit_ref ? h("p", { class: "muted" }, "diff not available here" + (v.diff_error ? ": " + v.diff_error : "")) : null),
        v.confirm_required ? h("p", { class: "warn large-diff" }, v.diff_truncated
          ? `This diff is ${fmtBytes(v.diff_bytes)}; only the first 64 KiB is shown. Approving deploys all of it.`
          : "The diff could not be shown. Approving deploys the whole proposed tree.") : null,
        h("div", { class: "row" }, note,
          confirmBox ? h("label", { class: "muted" }, confirmBox, " I reviewed the full diff") : null,
          h("button", { class: "ok approve", onclick: () => resolve("approve") }, "approve"),
          h("button", { class: "danger deny", onclick: () => resolve("deny") }, "deny")));
    }) : [empty("nothing waiting for approval")]));
  }

  function diffLines(diff) {
    return diff.split("\n").map((line) => h("span", { class: line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : "" }, line + "\n"));
  }

  function renderQuestions(items) {
    setCount("questions-count", items.length);
    $("questions").replaceChildren(...(items.length ? keepItems("questions", items, (q) => q.question_id, (q) => {
      const name = "q-" + q.question_id;
      const opts = q.options.map((o, i) => h("label", { class: "opt" },
        h("input", { type: q.multi ? "checkbox" : "radio", name, value: o, id: name + "-" + i }), " ", o));
      const free = h("input", { class: "free", placeholder: q.options.length ? "or your own answer" : "your answer", "aria-label": "free-text answer" });
      const form = h("form", { class: "question", dataset: { id: q.question_id } },
        h("div", { class: "item-head" }, h("a", { href: "/agents/" + q.asker }, q.asker), h("span", { class: "muted" }, " asks · " + fmtAgo(q.asked_at)),
          q.multi ? h("span", { class: "badge dim" }, "choose any") : null,
          q.deadline_at ? h("span", { class: "muted" }, " · expires " + fmtTime(q.deadline_at)) : null),
        h("p", { class: "q" }, q.question), h("div", { class: "opts" }, opts),
        h("div", { class: "row" }, free, h("button", { class: "primary" }, "answer")));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const chosen = [...form.querySelectorAll("input[name='" + name + "']:checked")].map((i) => i.value);
        if (free.value.trim()) chosen.push(free.value.trim());
        if (!chosen.length) return hive.toast("pick an option or type an answer", "error");
        const answer = q.multi ? chosen : chosen[chosen.length - 1];
        if (await act("answer", "POST", `/api/questions/${encodeURIComponent(q.question_id)}/answer`, { answer })) load();
      });
      return h("div", { class: "item" }, form);
    }) : [empty("no open questions")]));
  }

  function msgRow(m) {
    return h("div", { class: "msg", dataset: { id: m.id } },
      h("span", { class: "when muted" }, fmtTime(m.sent_at)),
      h("span", { class: "who" }, m.from, h("span", { class: "arrow" }, " → "), m.to),
      h("span", { class: "body" }, m.body));
  }

  function renderMessages(inbox, flow) {
    setCount("inbox-count", inbox.length);
    // the broker lists newest first: so do we, and the newest are what is on screen
    $("inbox").replaceChildren(...(inbox.length ? inbox.slice(0, 30).map((m) => {
      const row = msgRow(m);
      row.append(h("button", { class: "small ghost", onclick: () => { $("compose-to").value = m.from; $("compose-body").focus(); } }, "reply"));
      return row;
    }) : [empty("inbox is empty")]));
    const box = $("messages");
    box.replaceChildren(...(flow.length ? flow.slice(0, 60).map(msgRow) : [empty("no messages yet")]));
    box.scrollTop = 0;
  }

  function renderTombstones(items) {
    setCount("tombstones-count", items.length);
    $("tombstones").replaceChildren(...(items.length ? items.map((t) => h("div", { class: "item row", dataset: { agent: t.name } },
      h("span", { class: "tomb" }, "✝ " + t.name), h("span", { class: "muted" }, fmtBytes(t.state_bytes) + " kept"), h("span", { class: "spacer" }),
      h("button", { class: "small ok", onclick: () => act("revive " + t.name, "POST", `/api/agents/${t.name}/lifecycle/revive`).then(load) }, "⊕ revive"),
      h("button", { class: "small danger", onclick: () => confirm(`Purge ${t.name}? Config history, credentials, notes and events are deleted. No undo.`) && act("purge " + t.name, "POST", `/api/agents/${t.name}/destroy?purge=true`).then(load) }, "purge")))
      : [empty("no destroyed agents with kept state")]));
  }

  function renderBackups(b, failed) {
    const last = b.last_done, snaps = b.snapshots || [], newest = snaps[0];  // listed newest first
    const run = h("button", { class: "small", onclick: () => act("backup", "POST", "/api/backups/run", {}) }, "run backup now");
    // hive-backup did not answer: say nothing about snapshots we could not list (the error is shown above)
    if (failed && !last) { $("backups").replaceChildren(run); return; }
    $("backups").replaceChildren(
      h("p", {}, last ? [h("span", { class: "badge " + (last.ok ? "good" : "bad") }, last.ok ? "last run ok" : "last run failed"), " ", fmtBytes(last.bytes), " in ", last.duration_s.toFixed(1), "s", last.error ? h("span", { class: "error" }, " " + last.error) : null]
        : newest ? [h("span", { class: "badge good" }, "latest snapshot"), " ", fmtAgo(newest.created_at)] : h("span", { class: "muted" }, "no backup yet")),
      h("p", { class: "muted" }, snaps.length + " snapshot(s)" + (newest ? " · newest " + newest.snapshot_id + (newest.verified ? " · verified" : "") : "")),
      h("button", { class: "small", onclick: () => act("backup", "POST", "/api/backups/run", {}) }, "run backup now"));
  }

  function renderStorage(s) {
    const per = Object.entries(s.per_agent || {}).sort((a, b) => b[1] - a[1]);
    const max = Math.max(1, ...per.map(([, v]) => v), s.broker_bytes, s.backups_bytes);
    const bar = (name, bytes) => {
      const fill = h("span", { class: "fill" });
      fill.style.width = (100 * bytes / max).toFixed(1) + "%";  // CSSOM, allowed by the CSP
      return h("div", { class: "bar-row" }, h("span", { class: "bar-name" }, name),
        h("span", { class: "bar" }, fill), h("span", { class: "muted bar-val" }, fmtBytes(bytes)));
    };
    $("storage").replaceChildren(...per.map(([n, v]) => bar(n, v)), bar("broker db", s.broker_bytes), bar("backups", s.backups_bytes),
      h("p", {}, h("strong", {}, "total " + fmtBytes(s.total_bytes))));
    $("storage-total").textContent = "disk " + fmtBytes(s.total_bytes);
  }

  function renderErrors(errors) {
    for (const [section, msg] of Object.entries(errors || {})) {
      const box = $(section === "agents" ? "tombstones" : section === "messages" ? "messages" : section);
      if (box) box.prepend(h("p", { class: "error" }, section + ": " + msg));
    }
  }

  async function load() {
    try {
      view = await api("GET", "/api/overview");
    } catch (e) {
      hive.toast("overview failed: " + e.message, "error");
      return;
    }
    agents.clear();
    for (const a of view.agents) agents.set(a.name, a);
    renderAgents();
    renderApprovals(view.approvals);
    renderQuestions(view.questions);
    renderMessages(view.inbox, view.messages);
    renderTombstones(view.tombstones);
    renderBackups(view.backups, !!(view.errors && view.errors.backups));
    renderStorage(view.storage);
    renderErrors(view.errors);
  }
  const reload = hive.debounce(load, 250);

  function patch(name, fn) {
    const a = agents.get(name);
    if (!a) { reload(); return; }
    fn(a);
    const old = document.getElementById("agent-" + name);
    if (old) old.replaceWith(agentRow(a)); else renderAgents();
  }

  /* The plan's windows come with ctl.state only: asked again after a turn or a presence change (one per agent at a time). */
  const limitTimers = new Map();
  function refreshLimits(name) {
    clearTimeout(limitTimers.get(name));
    limitTimers.set(name, setTimeout(async () => {
      limitTimers.delete(name);
      let r;
      try { r = await api("GET", "/api/agents/" + encodeURIComponent(name)); } catch (e) { return; }
      if (agents.has(name)) patch(name, (a) => { a.plan = r.plan; a.rate_limited_until = r.rate_limited_until; });
    }, 300));
  }

  function shimmer() {
    const b = $("banner");
    b.classList.add("active");
    clearTimeout(shimmer.t);
    shimmer.t = setTimeout(() => b.classList.remove("active"), 4000);
  }

  hive.stream("", {
    presence: (p) => {
      patch(p.agent, (a) => { a.presence = p; a.status = hive.statusFromPresence(p) || a.status; if (p.alive) a.rate_limited_until = p.until || null; });
      refreshLimits(p.agent);
    },
    event: ({ agent, event: e }) => patch(agent, (a) => {
      const p = e.payload || {};
      if (e.kind === "status_changed") a.status = hive.eventStatus(p.status) || a.status;
      else if (e.kind === "model_changed") a.model = p.model;
      else if (e.kind === "token_usage_changed") { if ("ctx" in p) a.ctx = p.ctx; if ("cost" in p) a.cost = p.cost; }
      else if (e.kind === "turn_state_changed") a.turn_state = p.state;
      else if (e.kind === "turn_start" && "unread" in p) a.unread = p.unread;
    }),
    turn: ({ agent, turn }) => { patch(agent, (a) => { a.last_turn = turn; }); refreshLimits(agent); },
    broker: () => { shimmer(); reload(); },
    deployer: reload,
    backup: reload,
    reset: reload,
  });

  $("compose").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = $("compose-body").value.trim();
    if (!body) return;
    const to = $("compose-to").value;
    if (to === "*" && !confirm(`Send this to every agent (${agents.size})? Each one wakes up for it.`)) return;
    if (await act("send", "POST", "/api/messages", { to, body })) { $("compose-body").value = ""; load(); }
  });
  $("spawn-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = ev.target.elements.name.value.trim();
    if (await act("spawn " + name, "POST", "/api/agents", { name })) { ev.target.reset(); load(); }
  });
  setInterval(() => { for (const el of document.querySelectorAll("[data-ago]")) el.textContent = fmtAgo(+el.dataset.ago); }, 5000);
  load();
})();
