"""Every `hive` command and option explains itself; flags look like flags; nothing points outside the repo."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.testing import CliRunner

from hivewire.cli import app, load_plugins

# words that mean the help leans on something an operator does not have
FOREIGN = re.compile(r"\bseeds?\b|\.\./shared|/work/|DESIGN\.md", re.IGNORECASE)


def tree() -> TyperGroup:
    load_plugins()
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    return root


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, command) for the root and every sub-command (typer's own click classes)."""
    yield path, cmd
    if isinstance(cmd, TyperGroup):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, (*path, name))


def test_service_plugins_are_loaded() -> None:
    names = set(tree().commands)
    assert {"up", "status", "agents", "send", "backup", "session", "inbox", "migrate"} <= names


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, cmd in walk(tree()):
        if not (cmd.help or cmd.short_help or "").strip():
            missing.append(" ".join(path) or "hive")
        for p in cmd.params:
            if not (getattr(p, "help", None) or "").strip():
                missing.append(f"{' '.join(path)} {p.opts[0] if isinstance(p, TyperOption) else p.name}")
            assert isinstance(p, TyperOption | TyperArgument)
    assert not missing, f"no help text: {missing}"


def test_help_pages_render_flags_as_flags_and_stay_in_the_repo() -> None:
    root = tree()
    runner = CliRunner()
    pages = 0
    for path, cmd in walk(root):
        for p in cmd.params:
            if isinstance(p, TyperOption) and p.type_descriptor.annotation is bool:
                assert p.is_flag, f"{' '.join(path)} {p.opts[0]} takes a value; make it a flag"
        out = runner.invoke(app, [*path, "--help"])
        assert out.exit_code == 0, (path, out.output)
        assert "<bool>" not in out.output, (path, out.output)
        assert not FOREIGN.search(out.output), (path, FOREIGN.search(out.output), out.output)
        pages += 1
    assert pages > 40
    destroy = runner.invoke(app, ["agents", "destroy", "--help"]).output
    assert re.search(r"--purge / --keep\s+Wipe", destroy), destroy


def test_the_command_list_is_never_cut_short() -> None:
    """`hive --help` in an 80-column terminal shows every command's one-line help whole (a first
    sentence short enough), never one cut off with '...'."""
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert out.exit_code == 0, out.output
    listing = out.output.split("Commands:", 1)[1].splitlines()
    assert len(listing) > 15 and any(line.split()[:1] == ["sim-model"] for line in listing), out.output
    cut = [line.strip() for line in listing if line.rstrip().endswith(("...", "…"))]
    assert not cut, "\n".join(cut)
