/* hive dashboard: helpers shared by the pages (no framework, no build step). */
"use strict";

const hive = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  /* Build an element: h("div", {class: "x", onclick: fn}, "text", child, ...). Text is never parsed as HTML. */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }

  function toast(text, kind) {
    const t = document.getElementById("toast");
    if (!t) return;
    t.textContent = text;
    t.className = "toast " + (kind || "info");
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  /* Every page action goes through the JSON API. */
  async function api(method, path, body) {
    const opts = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (method !== "GET") {
      opts.headers["X-CSRF-Token"] = csrf();
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body === undefined ? {} : body);
    }
    const r = await fetch(path, opts);
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("logged out"); }
    const data = r.headers.get("content-type")?.includes("json") ? await r.json() : {};
    if (!r.ok) {
      const err = data.error || {};
      throw new Error((err.code ? err.code + ": " : "") + (err.message || r.statusText));
    }
    return data;
  }

  /* Run an action with feedback; returns the result or null. */
  async function act(label, method, path, body) {
    try {
      const res = await api(method, path, body);
      toast(label + " ✓", "ok");
      return res;
    } catch (e) {
      toast(label + " failed: " + e.message, "error");
      return null;
    }
  }

  const fmtTokens = (n) => n === null || n === undefined ? "?" : n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e3 ? Math.round(n / 1e3) + "k" : String(n);
  const fmtBytes = (n) => { if (!n) return "0 B"; const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return n.toFixed(i ? 1 : 0) + " " + u[i]; };
  const fmtDur = (ms) => ms >= 60000 ? Math.floor(ms / 60000) + "m" + Math.round((ms % 60000) / 1000) + "s" : (ms / 1000).toFixed(1) + "s";
  function fmtAgo(ts) {
    if (!ts) return "";
    const s = Math.max(0, Date.now() / 1000 - ts);
    if (s < 60) return Math.round(s) + "s ago";
    if (s < 3600) return Math.round(s / 60) + "m ago";
    if (s < 86400) return Math.round(s / 3600) + "h ago";
    return Math.round(s / 86400) + "d ago";
  }
  const fmtTime = (ts) => ts ? new Date(ts * 1000).toLocaleTimeString() : "";

  /* A clock time for people: 14:05, or "Tue 14:05" when it is not within the next 20 hours. */
  function fmtClock(ts) {
    if (!ts) return "?";
    const d = new Date(ts * 1000), hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    return Math.abs(ts - Date.now() / 1000) < 20 * 3600 ? hm : d.toLocaleDateString([], { weekday: "short" }) + " " + hm;
  }
  /* Seconds left as 45s, 1m 30s, 2h 05m. */
  function fmtLeft(s) {
    s = Math.max(0, Math.ceil(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  }

  /* Usage limits (AgentView.rate_limited_until, .plan). The countdown ticks by itself (data-until). */
  const countdownText = (until) => {
    const left = until - Date.now() / 1000;
    return left > 0 ? "resumes in " + fmtLeft(left) : "resuming";
  };
  function countdown(until, id) {
    if (!until) return null;
    return h("span", { class: "badge bad countdown", id, dataset: { until }, title: "parked on a usage limit: no model request before " + new Date(until * 1000).toLocaleString() }, countdownText(until));
  }
  /* One badge per plan window: "five_hour 100% · resets 14:05"; near its limit (allowed_warning) says so.
     `notable`: only the windows that hold the agent back or are near their limit. */
  function planBadges(plan, notable) {
    return Object.entries(plan || {}).sort(([a], [b]) => a.localeCompare(b))
      .filter(([, w]) => !notable || w.status === "rejected" || w.status === "allowed_warning")
      .map(([name, w]) => {
        const pct = w.utilization === null || w.utilization === undefined ? "?" : Math.round(100 * w.utilization) + "%";
        const warn = w.status === "allowed_warning", hit = w.status === "rejected";
        return h("span", { class: "badge plan-window " + (hit ? "bad limit-hit" : warn ? "warnc limit-warning" : "dim"), dataset: { window: name, status: w.status || "" },
          title: name + ": " + (w.status || "status unknown") + (w.resets_at ? ", resets " + new Date(w.resets_at * 1000).toLocaleString() : "") },
        (warn ? "near limit: " : hit ? "limit reached: " : "") + name + " " + pct + (w.resets_at ? " · resets " + fmtClock(w.resets_at) : ""));
      });
  }
  setInterval(() => { for (const el of document.querySelectorAll("[data-until]")) el.textContent = countdownText(+el.dataset.until); }, 1000);

  /* Same rule as hive_dashboard.overview.presence_label. */
  function label(presence, status) {
    if (!presence) return "offline";
    if (!presence.alive) return presence.state === "offline" ? "offline" : "dead";
    if (status === "needs_login" || status === "rate_limited") return status;
    if (presence.state === "waiting") return presence.reason ? "waiting(" + presence.reason + ")" : "waiting";
    return presence.state;
  }
  /* The status a live heartbeat implies (same rule as hive_dashboard.hub.status_from_presence); null: it says nothing. */
  function statusFromPresence(p) {
    if (!p || !p.alive) return null;
    if (p.state === "waiting") return ({ needs_login: "needs_login", rate_limit: "rate_limited" })[p.reason] || null;
    return ["idle", "thinking", "compacting"].includes(p.state) ? "online" : null;
  }
  /* A status_changed event's status for the badge (same rule as the hub's); null for the login flow's
     other steps (needs_login_cancelled, login_done), which are not statuses. */
  const STATUSES = ["online", "needs_login", "rate_limited", "offline", "over_budget", "runaway"];
  function eventStatus(s) {
    s = String(s || "");
    if (s === "needs_login_started") s = "needs_login";
    return STATUSES.includes(s) ? s : null;
  }
  const labelClass = (l) => "p-" + l.replace(/\(.*$/, "");
  // plain words (the DejaVu fonts Debian ships lack glyphs such as U+26BF), the colour says the rest
  const labelText = (l) => ({ dead: "offline-dead", rate_limited: "rate limited", needs_login: "needs login" })[l] || l;

  /* One EventSource; the browser resends Last-Event-ID itself on reconnect. */
  function stream(query, handlers) {
    const live = document.getElementById("live");
    const es = new EventSource("/api/stream" + (query ? "?" + query : ""));
    const setLive = (ok) => { if (live) { live.textContent = ok ? "● live" : "● reconnecting"; live.className = "live " + (ok ? "ok" : "bad"); } };
    es.onopen = () => setLive(true);
    es.onerror = () => setLive(false);
    for (const [kind, fn] of Object.entries(handlers)) {
      es.addEventListener(kind, (m) => { try { fn(JSON.parse(m.data), m); } catch (e) { console.error(kind, e); } });
    }
    return es;
  }

  function debounce(fn, ms) {
    let t = null;
    return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
  }

  return { h, api, act, toast, fmtTokens, fmtBytes, fmtDur, fmtAgo, fmtTime, fmtClock, fmtLeft, countdown, planBadges, label, labelClass, labelText, statusFromPresence, eventStatus, stream, debounce };
})();
