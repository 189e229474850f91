"""`hive backup ...` through the typer app (offline mode: no service needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hive_backup.cli import register


@pytest.fixture
def app(home: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("HIVE_HOME", str(home))
    (home / "backup").mkdir(exist_ok=True)
    (home / "backup" / "config.toml").write_text("[scheduler]\nenabled = false\n")
    a = typer.Typer()

    @a.callback()
    def main() -> None:
        """test root"""

    register(a)
    return a


def test_cli_run_list_verify_restore_prune(app: typer.Typer, home: Path, tmp_path: Path) -> None:
    r = CliRunner()
    out = r.invoke(app, ["backup", "run", "--offline", "--json"])
    assert out.exit_code == 0, out.output
    sid = next(p.name for p in (home / "backups").iterdir() if not p.name.startswith("."))
    out = r.invoke(app, ["backup", "list", "--offline", "--json"])
    assert sid in out.output
    ident = home / "backup" / "identity.txt"
    out = r.invoke(app, ["backup", "verify", sid, "--offline", "--identity", str(ident)])
    assert out.exit_code == 0 and "verified" in out.output
    out = r.invoke(app, ["backup", "restore", sid, str(tmp_path / "scratch"), "--offline", "--identity", str(ident)])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "scratch" / "broker.sqlite").exists()
    out = r.invoke(app, ["backup", "prune", "--offline", "--dry-run"])
    assert out.exit_code == 0 and "would delete 0" in out.output
    # a flipped byte: verify exits non-zero and says so
    obj = home / "backups" / sid / "db" / "broker.sqlite.gz"
    data = bytearray(obj.read_bytes())
    data[-10] ^= 0x01
    obj.write_bytes(bytes(data))
    out = r.invoke(app, ["backup", "verify", sid, "--offline"])
    assert out.exit_code == 1 and "VERIFY FAILED" in out.output
