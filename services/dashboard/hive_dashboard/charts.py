"""Turn stats: the summary and an inline SVG chart of ctx against the watermarks."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from hive_dashboard.schemas import StatsSummary
from hivewire.wire.agent import TurnStats

DEFAULT_WINDOW = 200_000
WATERMARKS = ((0.5, "50% fresh session", "wm50"), (0.75, "75% compact", "wm75"))


def turn_ctx(t: TurnStats) -> int:
    """The last inference's prompt size: input + cache read + cache creation."""
    return t.last_input_tokens + t.last_cache_read_input_tokens + t.last_cache_creation_input_tokens


def summarize(turns: Sequence[TurnStats]) -> StatsSummary:
    s = StatsSummary(turns=len(turns))
    for t in turns:
        s.ok += t.result_kind == "ok"
        s.failed += t.result_kind != "ok"
        s.total_duration_ms += t.duration_ms
        s.input_tokens += t.input_tokens
        s.output_tokens += t.output_tokens
        s.cache_read_input_tokens += t.cache_read_input_tokens
        s.cache_creation_input_tokens += t.cache_creation_input_tokens
        s.tool_calls += t.tool_call_count
    if turns:
        s.mean_duration_ms = s.total_duration_ms // len(turns)
        last = turns[-1]
        s.last_ctx = turn_ctx(last) or None
        s.context_window = last.context_window or DEFAULT_WINDOW
    else:
        s.context_window = DEFAULT_WINDOW
    return s


def _k(n: float) -> str:
    return f"{n / 1000:.0f}k" if n >= 1000 else f"{n:.0f}"


def ctx_chart_svg(turns: Sequence[TurnStats], width: int = 960, height: int = 240) -> str:
    """A line of ctx per turn, with dashed lines at 50% and 75% of the context window."""
    left, right, top, bottom = 48, 12, 12, 28
    pw, ph = width - left - right, height - top - bottom
    window = max([t.context_window for t in turns if t.context_window] or [DEFAULT_WINDOW])
    points = [turn_ctx(t) for t in turns]
    ymax = max([window, *points])

    def y(v: float) -> float:
        return top + ph - (v / ymax) * ph

    def x(i: int) -> float:
        return left + (pw * i / (len(points) - 1) if len(points) > 1 else pw / 2)

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="context tokens per turn against the 50% and 75% watermarks">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>',
        f'<line x1="{left}" y1="{y(window):.1f}" x2="{left + pw}" y2="{y(window):.1f}" class="wmfull"/>',
        f'<text x="{left - 4}" y="{y(window) + 4:.1f}" class="axis" text-anchor="end">{_k(window)}</text>',
        f'<text x="{left - 4}" y="{y(0) + 4:.1f}" class="axis" text-anchor="end">0</text>',
    ]
    for frac, label, cls in WATERMARKS:
        yy = y(window * frac)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" class="{cls}"/>')
        out.append(f'<text x="{left - 4}" y="{yy + 4:.1f}" class="axis" text-anchor="end">{_k(window * frac)}</text>')
        out.append(f'<text x="{left + pw - 4}" y="{yy - 4:.1f}" class="{cls}-label" text-anchor="end">'
                   f"{escape(label)}</text>")
    if points:
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(points))
        out.append(f'<polyline points="{path}" class="ctxline"/>')
        for i, v in enumerate(points):
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" class="ctxdot"><title>turn {i + 1}: '
                       f"ctx {v}</title></circle>")
        if len(points) > 1:
            out.append(f'<text x="{left}" y="{height - 8}" class="axis">turn 1</text>')
        out.append(f'<text x="{x(len(points) - 1):.1f}" y="{height - 8}" class="axis" text-anchor="end">'
                   f"turn {len(points)}</text>")
    else:
        out.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" class="axis" text-anchor="middle">'
                   "no turns yet</text>")
    out.append("</svg>")
    return "".join(out)
