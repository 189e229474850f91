"""HTML pages (home, per-agent, login) and the login/logout form posts."""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Response

from hive_dashboard.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    check_state_change,
    csrf_cookie_for,
    page_guard,
    safe_next,
    session_cookie,
    token_valid,
)
from hive_dashboard.demo import with_banner
from hive_dashboard.deps import CfgDep
from hive_dashboard.metrics import ACTIONS, AUTH_FAILURES
from hivewire.names import is_agent_name


@cache
def _template(name: str) -> str:
    return (files("hive_dashboard") / "templates" / name).read_text()


@cache
def _favicon() -> bytes:
    return (files("hive_dashboard") / "static" / "favicon.svg").read_bytes()


def render(name: str, **ctx: str) -> str:
    out = _template(name)
    for key, value in ctx.items():
        out = out.replace("{{" + key + "}}", escape(value))
    return out


def page(request: Request[Any, Any, Any], name: str, status: int = 200, **ctx: str) -> Response[str]:
    csrf, cookie = csrf_cookie_for(request)
    html = render(name, csrf=csrf, **ctx)
    if getattr(request.app.state.get("cfg"), "demo", False):
        html = with_banner(html)
    return Response(html, media_type=MediaType.HTML, status_code=status,
                    cookies=[cookie] if cookie else None, headers={"Cache-Control": "no-store"})


class PagesController(Controller):
    include_in_schema = False

    @get("/", guards=[page_guard])
    async def home(self, request: Request[Any, Any, Any]) -> Response[str]:
        return page(request, "home.html", title="hive")

    @get("/agents/{name:str}", guards=[page_guard])
    async def agent(self, request: Request[Any, Any, Any], name: Annotated[str, PathParameter()]) -> Response[str]:
        if not is_agent_name(name):
            raise NotFoundException("no such agent")
        return page(request, "agent.html", title=f"{name} · hive", agent=name)

    @get("/favicon.ico")
    async def favicon(self) -> Response[bytes]:
        """The hexagon (an SVG, which browsers take from /favicon.ico too); public, like /static."""
        return Response(_favicon(), media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})

    @get("/login")
    async def login_form(self, request: Request[Any, Any, Any],
                         next_: Annotated[str | None, QueryParameter(name="next")] = None) -> Response[str]:
        return page(request, "login.html", title="log in · hive", next=safe_next(next_), error="")

    @post("/login", status_code=303)
    async def login(
        self, request: Request[Any, Any, Any], cfg: CfgDep,
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        check_state_change(request, data.get(CSRF_FIELD))
        target = safe_next(data.get("next"))
        if not token_valid(cfg, data.get("token", "")):
            AUTH_FAILURES.labels("bad_token").inc()
            ACTIONS.labels("login", "forbidden").inc()
            return page(request, "login.html", status=401, title="log in · hive", next=target,
                        error="That is not the operator token.")
        ACTIONS.labels("login", "ok").inc()
        return Redirect(target, status_code=303, cookies=[session_cookie(cfg)])

    @post("/logout", status_code=303)
    async def logout(
        self, request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        check_state_change(request, data.get(CSRF_FIELD))
        ACTIONS.labels("logout", "ok").inc()
        resp: Response[Any] = Redirect("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp
