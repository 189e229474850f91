/* hive dashboard: the hosts page (issue 26). Polls /api/hosts (the deployer's hive.hosts.list). */
"use strict";

(() => {
  const { h, api, fmtBytes, fmtAgo } = hive;
  const POLL_MS = 2000;
  let last = null;

  function capacity(x) {
    const limit = x.agent_limit ? `${x.agents.length}/${x.agent_limit} agents` : `${x.agents.length} agents (no limit)`;
    const mem = x.mem_total ? `${fmtBytes(x.mem_available)} free of ${fmtBytes(x.mem_total)}` : "memory unknown";
    return `${limit} · ${x.cpus || "?"} cpus · load ${Number(x.load1 || 0).toFixed(2)} · ${mem}`;
  }

  function stateCell(x) {
    const cls = x.state === "lost" ? "badge bad" : x.state === "online" ? "badge good" : "badge dim";
    return h("span", { class: cls, "data-state": x.state }, x.state === "lost" ? "lost (no heartbeat)" : x.state);
  }

  function agentLinks(names) {
    if (!names.length) return h("span", { class: "muted" }, "none");
    return names.flatMap((n, i) => [i ? ", " : "", h("a", { href: "/agents/" + encodeURIComponent(n) }, n)]);
  }

  function hostsTable(hosts) {
    return h("table", {},
      h("thead", {}, h("tr", {}, ...["host", "state", "role", "agents", "running", "capacity", "version",
        "runtime", "last heartbeat"].map((c) => h("th", {}, c)))),
      h("tbody", {}, ...hosts.map((x) => h("tr", { "data-host": x.name, class: x.state === "lost" ? "lost" : null },
        h("td", { class: "name" }, x.name),
        h("td", { class: "state" }, stateCell(x)),
        h("td", {}, x.role),
        h("td", { class: "agents" }, agentLinks(x.agents)),
        h("td", { class: "running" }, String(x.running)),
        h("td", { class: "capacity" }, capacity(x)),
        h("td", { class: "version" }, x.version || "?"),
        h("td", {}, x.runtime || "?"),
        h("td", { class: "heartbeat", "data-ts": x.last_heartbeat || "" },
          x.last_heartbeat ? fmtAgo(x.last_heartbeat) : (x.state === "invited" ? "not joined yet" : "never"))))));
  }

  function placements(hosts) {
    const rows = hosts.flatMap((x) => x.agents.map((a) => [a, x]));
    if (!rows.length) return h("p", { class: "empty" }, "no agents");
    rows.sort((a, b) => a[0].localeCompare(b[0]));
    return h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "agent"), h("th", {}, "host"), h("th", {}, "host state"))),
      h("tbody", {}, ...rows.map(([a, x]) => h("tr", { "data-agent": a },
        h("td", {}, h("a", { href: "/agents/" + encodeURIComponent(a) }, a)),
        h("td", { class: "host" }, x.name),
        h("td", {}, stateCell(x))))));
  }

  async function refresh() {
    try {
      const data = await api("GET", "/api/hosts");
      last = data.hosts;
      document.getElementById("hosts").replaceChildren(hostsTable(last));
      document.getElementById("placements").replaceChildren(placements(last));
      const lost = last.filter((x) => x.state === "lost").length;
      document.getElementById("hosts-count").textContent = `${last.length}${lost ? ` · ${lost} lost` : ""}`;
      document.getElementById("hosts-updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      document.getElementById("hosts").replaceChildren(h("p", { class: "empty error" }, "hosts unavailable: " + e.message));
    }
  }

  refresh();
  setInterval(refresh, POLL_MS);
})();
