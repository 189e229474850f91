"""API and page tests through Litestar's test client (app in-process, FAKE services on real NATS)."""

from __future__ import annotations

import stat
from pathlib import Path

from litestar.testing import AsyncTestClient

from hive_dashboard.config import TOKEN_FILE, DashboardConfig
from hivewire.settings import Settings
from tests.dashboard.conftest import TOKEN, Stack, login
from tests.support.procs import wait_for

Client = AsyncTestClient  # type: ignore[type-arg]


async def test_unauthenticated_requests_are_refused(client: Client) -> None:
    r = await client.get("/api/overview")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    page = await client.get("/agents/alice", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fagents%2Falice"
    assert (await client.get("/api/stream")).status_code == 401
    assert (await client.post("/api/messages", json={"to": "alice", "body": "x"})).status_code == 401


async def test_login_sets_a_secure_httponly_strict_cookie(client: Client) -> None:
    bad = await login(client, "wrong-token")
    assert bad.status_code == 401 and "not the operator token" in bad.text
    r = await login(client)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("hive_session="))
    low = cookie.lower()
    assert "httponly" in low and "secure" in low and "samesite=strict" in low
    assert TOKEN not in cookie
    home = await client.get("/")
    assert home.status_code == 200 and 'id="agents"' in home.text
    assert "default-src 'self'" in home.headers["content-security-policy"]


async def test_login_without_csrf_is_refused(client: Client) -> None:
    await client.get("/login")
    r = await client.post("/login", data={"token": TOKEN, "_csrf": "nope"})
    assert r.status_code == 403
    assert "hive_session" not in client.cookies


async def test_state_change_needs_csrf_and_same_origin(authed: Client, stack: Stack) -> None:
    csrf = authed.headers.pop("X-CSRF-Token")
    body = {"to": "alice", "body": "hi"}
    assert (await authed.post("/api/messages", json=body)).status_code == 403
    assert (await authed.post("/api/messages", json=body, headers={"X-CSRF-Token": "forged"})).status_code == 403
    cross = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert (await authed.post("/api/messages", json=body, headers=cross)).status_code == 403
    site = {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
    assert (await authed.post("/api/messages", json=body, headers=site)).status_code == 403
    assert stack.store.sent() == []  # the refusals came back after the dashboard was done with each request
    ok = await authed.post("/api/messages", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201, ok.text
    assert stack.store.sent() == [("alice", "hi")]


async def test_bearer_token_works_without_csrf(client: Client, stack: Stack) -> None:
    h = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/api/overview", headers={"Authorization": "Bearer nope"})).status_code == 401
    r = await client.post("/api/agents/alice/prompt", json={"text": "hello"}, headers=h)
    assert r.status_code == 201, r.text
    assert stack.harnesses["alice"].prompts == ["hello"]


async def test_overview_has_every_section(authed: Client, stack: Stack, hive_home: Path) -> None:
    await wait_for(lambda: _presence_seen(authed))
    ov = (await authed.get("/api/overview")).json()
    assert ov["errors"] == {}
    alice = next(a for a in ov["agents"] if a["name"] == "alice")
    assert alice["label"] == "idle" and alice["model"] == "haiku" and alice["ctx"] == 42_000
    assert alice["unread"] == 2 and alice["context_window"] == 200_000
    assert [t["name"] for t in ov["tombstones"]] == ["bob"]
    assert ov["approvals"][0]["approval"]["kind"] == "apply_commit"
    assert "+{ model = \"sonnet\"; tools = [ \"git\" ]; }" in ov["approvals"][0]["diff"]
    assert ov["questions"][0]["multi"] is True
    assert [m["id"] for m in ov["inbox"]] == [stack.ids["inbox"]]
    assert len(ov["messages"]) == 2
    assert ov["backups"]["snapshots"][0]["verified"] is True
    assert ov["storage"]["per_agent"]["alice"] == 12_345 and ov["storage"]["total_bytes"] >= 12_345
    # the broker's disk use counts its search index too (both files are the real broker's)
    assert ov["storage"]["broker_bytes"] > (hive_home / "broker.sqlite").stat().st_size > 0


async def _presence_seen(c: Client) -> bool:
    ov = (await c.get("/api/agents")).json()
    return any(a["name"] == "alice" and a["presence"] for a in ov)


async def test_a_service_down_is_one_section_error(authed: Client, stack: Stack) -> None:
    await stack.run(stack.backup.stop())
    ov = (await authed.get("/api/overview")).json()
    assert ov["errors"]["backups"].startswith("unavailable")
    assert ov["approvals"]  # the rest still renders
    r = await authed.get("/api/backups")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    await stack.run(stack.backup.start())


async def test_resolve_approval_and_answer_question(authed: Client, stack: Stack) -> None:
    ap, q = stack.ids["approval"], stack.ids["question"]
    r = await authed.post(f"/api/approvals/{ap}/resolve", json={"decision": "approve", "note": "lgtm"})
    assert r.status_code == 201, r.text
    assert stack.store.resolved() == [(ap, "approve", "lgtm")]
    again = await authed.post(f"/api/approvals/{ap}/resolve", json={"decision": "deny"})
    assert again.status_code == 409
    missing = await authed.post(f"/api/approvals/{int(ap) + 100}/resolve", json={"decision": "deny"})
    assert missing.status_code == 404
    bad = await authed.post(f"/api/approvals/{ap}/resolve", json={"decision": "maybe"})
    assert bad.status_code == 400
    r = await authed.post(f"/api/questions/{q}/answer", json={"answer": ["unit", "e2e"]})
    assert r.status_code == 201, r.text
    assert stack.store.answers() == [(q, ["unit", "e2e"])]


async def test_agent_controls_reach_the_harness(authed: Client, stack: Stack) -> None:
    h = stack.harnesses["alice"]
    for path in ("compact", "cancel", "new-session"):
        assert (await authed.post(f"/api/agents/alice/{path}")).status_code == 201
    assert h.controls == ["compact", "cancel", "new_session"]
    assert (await authed.post("/api/agents/alice/model", json={"model": "sonnet"})).status_code == 201
    assert h.model == "sonnet"
    r = await authed.post("/api/agents/alice/login", json={"action": "start"})
    assert r.json()["result"]["login_url"].startswith("https://")
    hist = (await authed.get("/api/agents/alice/history")).json()
    assert [e["kind"] for e in hist["events"]][:3] == ["note", "tool_use", "tool_result"]


async def test_bad_input_is_400_and_offline_agent_409(authed: Client, stack: Stack) -> None:
    assert (await authed.post("/api/agents/Bad..Name/prompt", json={"text": "x"})).status_code == 400
    assert (await authed.post("/api/agents/alice/prompt", json={"text": ""})).status_code == 400
    assert (await authed.post("/api/agents/alice/prompt", json={"text": "x", "evil": 1})).status_code == 400
    assert (await authed.post("/api/agents/alice/model", json={"model": "a b; rm"})).status_code == 400
    r = await authed.post("/api/agents/nobody/prompt", json={"text": "x"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert (await authed.get("/agents/BAD")).status_code == 404


async def test_lifecycle_tombstones_and_backups(authed: Client, stack: Stack) -> None:
    assert (await authed.post("/api/agents/bob/lifecycle/revive")).status_code == 201
    assert (await authed.post("/api/agents/bob/destroy?purge=true")).status_code == 201
    assert (await authed.post("/api/agents/alice/lifecycle/explode")).status_code == 400
    assert stack.deployer.calls == [("revive", "bob"), ("purge", "bob")]
    assert (await authed.post("/api/backups/run", json={})).status_code == 201
    assert stack.backup.runs == 1


async def test_stats_chart_from_turns(authed: Client, stack: Stack) -> None:
    await authed.post("/api/agents/alice/prompt", json={"text": "go"})

    async def turned() -> bool:
        return (await authed.get("/api/agents/alice/stats")).json()["summary"]["turns"] == 1

    await wait_for(turned)
    s = (await authed.get("/api/agents/alice/stats")).json()
    assert s["summary"]["ok"] == 1 and s["summary"]["last_ctx"] == 70_000
    assert s["chart_svg"].startswith("<svg") and "75% compact" in s["chart_svg"] and "50% fresh" in s["chart_svg"]


async def test_schema_healthz_and_metrics(authed: Client, stack: Stack) -> None:
    schema = (await authed.get("/schema/openapi.json")).json()
    assert "/api/agents/{name}/prompt" in schema["paths"]
    assert (await authed.get("/schema")).json()["openapi"].startswith("3.")
    assert (await authed.get("/healthz")).json()["nats"] == "connected"
    await authed.post("/api/agents/alice/cancel")
    m = (await authed.get("/metrics")).text
    assert 'hive_dashboard_actions_total{kind="cancel",outcome="ok"}' in m
    assert "hive_dashboard_request_duration_seconds_bucket" in m
    assert "hive_dashboard_sse_clients" in m


def test_token_is_generated_0600_when_unset(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home")
    cfg = DashboardConfig.load(s, env={})
    f = s.home / TOKEN_FILE
    assert f.read_text().strip() == cfg.operator_token and len(cfg.operator_token) >= 32
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert DashboardConfig.load(s, env={}).operator_token == cfg.operator_token
    assert cfg.bind == ("127.0.0.1", 8000)
