"""API side of the operator's first hour: the favicon, a spawn error that says the rule, glyphs fonts have."""

from __future__ import annotations

import shutil
import subprocess
from importlib.resources import files

import pytest
from litestar.testing import AsyncTestClient

from hivewire.names import NAME_RULE, RESERVED
from tests.dashboard.conftest import Stack


async def test_favicon_is_served_without_login(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    r = await client.get("/favicon.ico")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.content.lstrip().startswith(b"<svg")


@pytest.mark.parametrize(("name", "words"), [("Bad_Name", NAME_RULE), ("-x", NAME_RULE), ("a" * 40, NAME_RULE),
                                             ("operator", "reserved")])
async def test_spawn_refusal_states_the_naming_rule(authed: AsyncTestClient, stack: Stack,  # type: ignore[type-arg]
                                                    name: str, words: str) -> None:
    r = await authed.post("/api/agents", json={"name": name})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "bad_name" and words in err["message"], err


def test_reserved_names_are_listed_in_the_refusal() -> None:
    from hivewire.errors import HiveError
    from hivewire.names import validate_agent_name

    with pytest.raises(HiveError) as exc:
        validate_agent_name("operator")
    assert all(r in exc.value.message for r in RESERVED)


@pytest.mark.skipif(shutil.which("fc-list") is None, reason="fontconfig's fc-list is not installed")
def test_every_glyph_of_the_dashboard_is_in_an_installed_font() -> None:
    """A glyph no installed font has (Debian ships DejaVu) renders as a box: the dashboard must not use one."""
    root = files("hive_dashboard")
    text = "".join((root / d / f.name).read_text(encoding="utf-8") for d in ("static", "templates")
                   for f in (root / d).iterdir() if f.name.endswith((".js", ".html", ".css", ".svg")))
    missing = []
    for ch in sorted({c for c in text if ord(c) > 127}):
        out = subprocess.run(["fc-list", f":charset={ord(ch):x}", "family"], capture_output=True, text=True,
                             check=True).stdout
        if not out.strip():
            missing.append(f"{ch} U+{ord(ch):04X}")
    assert not missing, f"no installed font has: {missing}"
