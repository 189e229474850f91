"""A dashboard started by `hive demo` (HIVE_DEMO=1) says so on every page; an ordinary one does not."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from hive_dashboard.app import create_app
from hive_dashboard.demo import BANNER_TEXT, with_banner
from hivewire.settings import Settings
from tests.dashboard.conftest import TEST_HOST, login

PAGES = ("/login", "/", "/agents/manager")


async def pages(settings: Settings) -> dict[str, str]:
    async with AsyncTestClient(app=create_app(settings, connect_nats=False), base_url=f"https://{TEST_HOST}") as c:
        out = {"/login": (await c.get("/login")).text}
        assert (await login(c)).status_code == 303
        for path in PAGES[1:]:
            r = await c.get(path)
            assert r.status_code == 200, (path, r.text)
            out[path] = r.text
        css = await c.get("/static/demo.css")
        assert css.status_code == 200 and ".demo-banner" in css.text
    return out


async def test_every_page_of_a_demo_says_it_is_one(dash_settings: Settings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_DEMO", "1")
    for path, html in (await pages(Settings.from_env())).items():
        body = html.split("<body", 1)[1]
        # the first thing in the body, before the header and the login form
        assert body.split(">", 1)[1].lstrip().startswith('<div class="demo-banner" id="demo-banner"'), (path, body)
        assert "agents talk to a scripted simulator, not a model" in body, path
        assert '<link rel="stylesheet" href="/static/demo.css">' in html.split("</head>", 1)[0], path


async def test_an_ordinary_dashboard_shows_no_banner(dash_settings: Settings,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVE_DEMO", raising=False)
    for path, html in (await pages(dash_settings)).items():
        assert "demo-banner" not in html and "simulator" not in html, path


def test_with_banner_leaves_a_page_without_body_alone() -> None:
    assert with_banner("<p>fragment</p>") == "<p>fragment</p>"
    assert BANNER_TEXT.startswith("DEMO: ")
