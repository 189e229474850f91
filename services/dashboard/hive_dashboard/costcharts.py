"""Spend per UTC day, stacked by model or by agent: an inline SVG from the ledger's day-by-X rows."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from hivewire.wire.broker import CostRow

W, H, PAD = 640, 180, 30
COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")


def spend_chart(rows: Sequence[CostRow], days: Sequence[str]) -> str:
    """`rows`: key = day (YYYY-MM-DD), key2 = model or agent. One bar a day, one colour a key2."""
    series = sorted({r.key2 for r in rows}, key=lambda k: (-sum(r.cost_usd for r in rows if r.key2 == k), k))
    by = {(r.key, r.key2): r.cost_usd for r in rows}
    totals = [sum(by.get((d, s), 0.0) for s in series) for d in days]
    top = max(totals, default=0.0) or 1.0
    bw = (W - 2 * PAD) / max(1, len(days))
    parts = [f'<svg class="spend-chart" viewBox="0 0 {W} {H + 40}" role="img" '
             f'aria-label="spend per day in dollars">']
    for i, d in enumerate(days):
        y = H
        for j, s in enumerate(series):
            v = by.get((d, s), 0.0)
            if v <= 0:
                continue
            hgt = (H - PAD) * v / top
            y -= hgt
            parts.append(f'<rect x="{PAD + i * bw + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{hgt:.1f}" '
                         f'fill="{COLORS[j % len(COLORS)]}"><title>{escape(d)} {escape(s or "(sessions)")}: '
                         f'${v:.4f}</title></rect>')
        if i % max(1, len(days) // 7) == 0:
            parts.append(f'<text x="{PAD + i * bw:.1f}" y="{H + 14}" font-size="10">{escape(d[5:])}</text>')
    parts.append(f'<text x="2" y="{PAD - 8}" font-size="10">${top:.2f}</text>')
    for j, s in enumerate(series[:9]):
        parts.append(f'<rect x="{PAD + j * 68}" y="{H + 24}" width="8" height="8" fill="{COLORS[j]}"/>'
                     f'<text x="{PAD + j * 68 + 11}" y="{H + 32}" font-size="10">{escape((s or "(sessions)")[:10])}'
                     f'</text>')
    parts.append("</svg>")
    return "".join(parts)
