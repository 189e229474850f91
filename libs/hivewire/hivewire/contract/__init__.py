"""The wire contract as documents: `docs/asyncapi.yaml` and `docs/wire.md`, generated
from the registry (`hivewire.wire.ops`). `python -m hivewire.contract --write` rewrites
them; `--check` exits 1 when they are out of date (tests/lib/test_contract_docs.py too)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def outputs() -> dict[str, Callable[[], str]]:
    """Repository-relative path -> renderer."""
    from hivewire.contract import asyncapi, markdown

    return {"docs/asyncapi.yaml": asyncapi.render, "docs/wire.md": markdown.render}


def stale(root: Path) -> list[str]:
    """The generated files under `root` that differ from what the registry renders."""
    out = []
    for rel, render in outputs().items():
        p = root / rel
        if not p.exists() or p.read_text() != render():
            out.append(rel)
    return out


def write(root: Path) -> list[str]:
    """Rewrite every generated file under `root`; returns those that changed."""
    changed = []
    for rel, render in outputs().items():
        p, text = root / rel, render()
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
            changed.append(rel)
    return changed
