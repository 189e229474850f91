"""Schemathesis against /schema of a running dashboard (uvicorn process, FAKE services): no 5xx."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dashboard.conftest import Dashboard, Stack


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(dashboard: Dashboard, stack: Stack, tmp_path: Path) -> None:
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])  # the venv's, first
    exe = shutil.which("schemathesis", path=path) or shutil.which("st", path=path)
    if exe is None:
        pytest.skip("schemathesis is not installed (requirements-test.txt)")
    cmd = [
        exe, "run", f"{dashboard.url}/schema/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", "15",
        "--seed", "20240601",
        "--header", f"Authorization: Bearer {dashboard.token}",
        "--exclude-path", "/api/stream",  # an endless event stream, tested in test_sse.py
        "--request-timeout", "15",
        "--generation-database", "none",
        "--report-dir", str(tmp_path / "st"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=200, cwd=tmp_path)
    sys.stdout.write(r.stdout[-6000:])
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:] + dashboard.proc.log()[-3000:]
    assert "No issues found" in r.stdout or "passed" in r.stdout
