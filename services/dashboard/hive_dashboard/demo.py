"""The demo banner: every page of a dashboard started by `hive demo` says it is one.

`hive demo` sets `HIVE_DEMO=1` for its services (`DashboardConfig.demo`); the
agents of such a hive talk to the bundled Messages-API simulator, so nothing
on the page is a model's work and every dollar shown is simulated.
"""

from __future__ import annotations

import re

DEMO_ENV = "HIVE_DEMO"
BANNER_TEXT = ("DEMO: agents talk to a scripted simulator, not a model. Their replies are scripted and "
               "the spend shown is simulated.")
_HEAD_END = "</head>"
_BODY = re.compile(r"<body[^>]*>")


def is_demo(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes")


def with_banner(html: str) -> str:
    """`html` with the banner as the body's first child (and its stylesheet); unchanged without a body."""
    m = _BODY.search(html)
    if m is None:
        return html
    banner = ('<div class="demo-banner" id="demo-banner" role="status"><strong>DEMO</strong>'
              + BANNER_TEXT.removeprefix("DEMO") + "</div>")
    html = html[: m.end()] + "\n" + banner + html[m.end():]
    return html.replace(_HEAD_END, '<link rel="stylesheet" href="/static/demo.css">\n' + _HEAD_END, 1)
