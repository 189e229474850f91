"""Which real agent CLI the tests run: the pinned one, or `HIVE_TEST_CLAUDE_VERSION`'s.

`HIVE_TEST_CLAUDE_VERSION=X.Y.Z scripts/install` puts that release in `.tools-X.Y.Z`;
run the tests with the same variable to use it instead of the pin in `.tools`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def claude_cli() -> Path:
    ver = os.environ.get("HIVE_TEST_CLAUDE_VERSION", "").strip()
    if not ver:
        return ROOT / ".tools/node_modules/.bin/claude"
    if not re.fullmatch(r"\d+\.\d+\.\d+", ver):
        raise ValueError(f"HIVE_TEST_CLAUDE_VERSION={ver!r}: must be a release like 2.1.332")
    return ROOT / f".tools-{ver}/node_modules/.bin/claude"


def missing_hint() -> str:
    ver = os.environ.get("HIVE_TEST_CLAUDE_VERSION", "").strip()
    if ver:
        return f"claude {ver} is not installed (HIVE_TEST_CLAUDE_VERSION={ver} scripts/install)"
    return "the claude CLI is not installed in .tools (scripts/install)"


# A model whose context window the CLI reports as 200000 (2.1.3xx reports 1M for `haiku`, now
# claude-haiku-5-5): the tests of the 75% / 50% watermarks pin it.
MODEL_200K = "claude-haiku-4-5"


def pin_model(home: Path, agent: str, model: str) -> None:
    """The agent's model file, as `ctl.model` would leave it (before its harness starts)."""
    state = home / "agents" / agent / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "model").write_text(model + "\n")
