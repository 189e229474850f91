"""The cost alerts (issue 24): promtool rule unit tests for budgets at 80% / used up and a runaway agent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROM = Path(__file__).resolve().parents[2] / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
pytestmark = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool not installed")


def test_cost_alert_rules_pass_their_promtool_tests() -> None:
    r = subprocess.run([PROMTOOL, "test", "rules", str(PROM / "rules" / "costs.rules.test.yml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    alerts = {r["alert"] for g in yaml.safe_load((PROM / "rules" / "hive.rules.yml").read_text())["groups"]
              for r in g["rules"]}
    assert {"HiveBudget80", "HiveBudgetExhausted", "HiveAgentRunaway"} <= alerts
