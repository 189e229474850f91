"""scripts/install: pip runs only when a pyproject/requirements file changed; its noise goes to a log.

Runs the real script in a copy of the repo's layout whose `.venv/bin/python`
is a stand-in that records each pip call (no network, no real install).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLAUDE_VERSION = next(line.split("=", 1)[1] for line in (REPO / "scripts/install").read_text().splitlines()
                      if line.startswith("CLAUDE_VERSION="))


def exe(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def layout(tmp: Path) -> tuple[Path, dict[str, str]]:
    root = tmp / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts/install", root / "scripts/install")
    for pkg in ("libs/hivewire", "services/broker", "services/dashboard"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "pyproject.toml").write_text(f'[project]\nname = "{pkg}"\n')
    (root / "requirements-test.txt").write_text("pytest\n")
    # the stand-in venv: pip prints build noise and records its arguments; FAIL_PIP makes it fail
    exe(root / ".venv/bin/python", f'echo "$@" >> "{tmp}/pip-calls"\n'
        'echo "WARNING: noisy build output"; echo "DEPRECATION: more noise" >&2\n'
        '[ -z "$FAIL_PIP" ] || { echo "ERROR: no matching distribution"; exit 1; }\n')
    exe(root / ".venv/bin/hive", "exit 0\n")
    exe(root / ".tools/node_modules/.bin/claude", f'echo "{CLAUDE_VERSION} (Claude Code)"\n')
    bin_dir = tmp / "bin"
    for tool in ("npm", "git", "bwrap"):
        exe(bin_dir / tool, "exit 0\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": "python3"}
    return root, env


def install(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "scripts/install"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def pip_calls(tmp: Path) -> list[str]:
    f = tmp / "pip-calls"
    return [c for c in f.read_text().splitlines() if "--upgrade pip" not in c] if f.exists() else []


def test_pip_skipped_when_nothing_changed_and_noise_goes_to_the_log(tmp_path: Path) -> None:
    root, env = layout(tmp_path)
    first = install(root, env)
    assert first.returncode == 0, first.stderr
    assert len(pip_calls(tmp_path)) == 1 and "-e libs/hivewire" in pip_calls(tmp_path)[0]
    assert "noise" not in first.stdout + first.stderr  # pip's output is in the log, not on the console
    assert "noisy build output" in (root / ".venv/install.log").read_text()
    assert all(line.startswith("==> ") for line in first.stdout.splitlines()), first.stdout

    again = install(root, env)
    assert again.returncode == 0, again.stderr
    assert len(pip_calls(tmp_path)) == 1  # nothing changed: no pip at all
    assert "Python packages: up to date" in again.stdout

    (root / "services/broker/pyproject.toml").write_text('[project]\nname = "broker"\nversion = "2"\n')
    changed = install(root, env)
    assert changed.returncode == 0 and len(pip_calls(tmp_path)) == 2


def test_pip_failure_shows_the_log_and_fails(tmp_path: Path) -> None:
    root, env = layout(tmp_path)
    out = install(root, {**env, "FAIL_PIP": "1"})
    assert out.returncode == 1
    assert "no matching distribution" in out.stderr
    assert not (root / ".venv/.hive-install-stamp").exists()  # the next run tries again
    assert install(root, env).returncode == 0
    assert len(pip_calls(tmp_path)) == 2
