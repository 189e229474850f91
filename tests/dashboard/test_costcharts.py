"""The dashboard's spend-per-day chart (hive_dashboard.costcharts): stacked bars per UTC day."""

from __future__ import annotations

import re

from hive_dashboard.costcharts import spend_chart
from hivewire.wire.broker import CostRow


def test_one_bar_segment_per_day_and_key_scaled_to_the_biggest_day() -> None:
    rows = [CostRow(key="2026-05-01", key2="opus", cost_usd=3.0, tokens=0, turns=1),
            CostRow(key="2026-05-01", key2="haiku", cost_usd=1.0, tokens=0, turns=1),
            CostRow(key="2026-05-03", key2="haiku", cost_usd=2.0, tokens=0, turns=1)]
    svg = spend_chart(rows, ["2026-05-01", "2026-05-02", "2026-05-03"])
    bar = r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" fill="[^"]+"><title>([^<]+)</title>'
    bars = re.findall(bar, svg)
    assert [t for _, t in bars] == ["2026-05-01 haiku: $1.0000", "2026-05-01 opus: $3.0000",
                                    "2026-05-03 haiku: $2.0000"]  # biggest series first, ties by name
    heights = [float(hgt) for hgt, _ in bars]
    assert sum(heights[:2]) == 150.0 and heights[2] == 75.0  # the 4-dollar day fills the plot (180 - 30)
    assert "$4.00" in svg and "<script" not in svg


def test_labels_are_escaped() -> None:
    svg = spend_chart([CostRow(key="2026-05-01", key2="<b>x", cost_usd=1.0, tokens=0, turns=1)], ["2026-05-01"])
    assert "<b>x" not in svg and "&lt;b&gt;x" in svg
