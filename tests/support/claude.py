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
