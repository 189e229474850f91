"""The Host header check (DNS rebinding): only the dashboard's own names are served, before auth."""

from __future__ import annotations

import httpx
import pytest
from litestar.testing import AsyncTestClient

from hive_dashboard.hosts import accepted_hosts, parse_entries
from hive_dashboard.metrics import AUTH_FAILURES
from hivewire.settings import Settings
from tests.dashboard.conftest import TEST_HOST, TOKEN, Dashboard

Client = AsyncTestClient  # type: ignore[type-arg]


def refused() -> float:
    return float(AUTH_FAILURES.labels("host")._value.get())


def test_accepted_hosts() -> None:
    assert accepted_hosts(("127.0.0.1", 8000)) == ["127.0.0.1:8000", "[::1]:8000", "localhost:8000"]
    assert accepted_hosts(("0.0.0.0", 8000)) == ["127.0.0.1:8000", "[::1]:8000", "localhost:8000"]
    assert "192.168.1.5:8000" in accepted_hosts(("192.168.1.5", 8000))
    assert "[fd00::5]:8000" in accepted_hosts(("fd00::5", 8000))
    assert "localhost" in accepted_hosts(("127.0.0.1", 80))  # a browser leaves port 80 out
    extra = accepted_hosts(("127.0.0.1", 8000), parse_entries("hive.example.org, dashboard:9000"))
    assert {"hive.example.org", "hive.example.org:8000", "dashboard:9000"} <= set(extra)
    assert "dashboard" not in extra and "dashboard:8000" not in extra
    # wildcards and junk are ignored, never turning the check off
    assert parse_entries("*, *.example.org, a b,,EVIL.example:80, x/y, ") == ("a", "b", "evil.example:80")


async def test_a_foreign_host_is_refused_before_auth(client: Client, dash_settings: Settings) -> None:
    port = dash_settings.dashboard_addr.rpartition(":")[2]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    before = refused()
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{int(port) + 1}", "127.0.0.1",
                 f"{TEST_HOST}.evil.example", "127.0.0.1:8000@evil.example"):
        r = await client.get("/api/overview", headers={**bearer, "Host": host})
        assert r.status_code == 400, host
        body = r.json()["error"]
        assert body["code"] == "bad_request" and "HIVE_DASHBOARD_ALLOWED_HOSTS" in body["message"], body
        assert (await client.get("/login", headers={"Host": host})).status_code == 400
    assert refused() == before + 12
    for host in (f"127.0.0.1:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", TEST_HOST):
        assert (await client.get("/healthz", headers={"Host": host})).status_code == 200, host
    assert (await client.get("/api/overview", headers={**bearer, "Host": f"localhost:{port}"})).status_code != 400
    assert refused() == before + 12


@pytest.mark.slow
async def test_the_real_server_refuses_a_rebound_name(dashboard: Dashboard) -> None:
    """uvicorn + the app, as run: a page on evil.example re-pointed at 127.0.0.1 gets nothing."""
    port = dashboard.url.rpartition(":")[2]
    async with httpx.AsyncClient(base_url=dashboard.url) as c:
        r = await c.get("/login", headers={"Host": f"evil.example:{port}"})
        assert r.status_code == 400 and "DNS rebinding" in r.json()["error"]["message"]
        assert "hive_csrf" not in r.headers.get("set-cookie", "")
        r = await c.get("/api/overview", headers={"Host": f"evil.example:{port}", "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 400
        assert (await c.get("/login")).status_code == 200
        assert (await c.get("/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})).status_code != 400
