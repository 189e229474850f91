"""What newer CLIs say beyond tokens (recorded from claude 2.1.332 against the simulator), login
tokens on disk, the liveness sampler, and `hive doctor`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hive_harness import cli, liveness, tokens
from hive_harness.doctor import check_credentials, pinned_version
from hive_harness.signals import TurnParser, jitter_s, plan_of, resets_at
from tests.support.claude import ROOT

DATA = Path(__file__).resolve().parent / "data"


def parse(name: str) -> TurnParser:
    p = TurnParser()
    for line in (DATA / name).read_text().splitlines():
        p.feed(line)
    return p


def test_usage_limit_under_oauth() -> None:
    p = parse("claude-2.1.332-oauth-usage-limit.jsonl")
    info = p.signals.rate_limit
    assert p.summary.rate_limited and p.summary.is_error and p.summary.api_error_status == 429
    assert resets_at(info) == 1796540000
    plan = plan_of(info)
    assert plan["five_hour"] == {"utilization": 1, "resets_at": 1796540000, "status": "rejected"}
    assert plan["seven_day"]["status"] == "allowed"
    assert p.signals.version == "2.1.332" and p.signals.tools is not None


def test_partial_messages_and_an_allowed_warning() -> None:
    p = parse("claude-2.1.332-partial-messages.jsonl")
    lines = (DATA / "claude-2.1.332-partial-messages.jsonl").read_text().splitlines()
    assert any(json.loads(raw)["type"] == "stream_event" for raw in lines)
    assert p.summary.got_result and not p.summary.is_error and not p.summary.rate_limited
    assert resets_at(p.signals.rate_limit) is None  # allowed: no park
    assert plan_of(p.signals.rate_limit)["five_hour"]["status"] == "allowed_warning"
    assert p.summary.ctx is not None


def test_expired_token_is_told_apart() -> None:
    p = parse("claude-2.1.332-token-expired.jsonl")
    assert p.summary.auth_failed and p.signals.auth_reason == "token_expired"
    old = parse("auth_failed.jsonl")  # an older CLI with no credentials at all
    assert old.summary.auth_failed and old.signals.auth_reason != "token_expired"


def test_api_key_429_carries_the_retry_delay() -> None:
    p = parse("claude-2.1.332-apikey-429.jsonl")
    assert p.summary.rate_limited and p.signals.rate_limit is None
    assert p.signals.retry_delay_ms is not None and p.signals.retry_delay_ms >= 7000  # retry-after: 7


def test_jitter_is_per_agent_and_deterministic() -> None:
    assert jitter_s("alice", 30) == jitter_s("alice", 30)
    assert 0 <= jitter_s("alice", 30) < 30 and jitter_s("alice", 30) != jitter_s("bob", 30)
    assert jitter_s("alice", 0) == 0


def test_tokens_stored_0600_and_never_through_a_symlink(tmp_path: Path) -> None:
    home = tmp_path / "home"
    tokens.write(tokens.fleet_path(home), "  sk-ant-oat01-fleet\n")
    path = tokens.fleet_path(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    creds = home / "agents" / "alice" / "creds"
    assert tokens.token_for(creds, home) == "sk-ant-oat01-fleet"
    tokens.write(tokens.agent_path(creds), "sk-ant-oat01-alice")
    assert tokens.token_for(creds, home) == "sk-ant-oat01-alice"  # the agent's own wins
    with pytest.raises(ValueError):
        tokens.write(path, "two words")
    other = creds.parent / "elsewhere"
    other.write_text("sk-ant-oat01-stolen\n")
    tokens.agent_path(creds).unlink()
    tokens.agent_path(creds).symlink_to(other)
    assert tokens.token_for(creds, home) == "sk-ant-oat01-fleet"


def test_set_token_reads_stdin_and_backups_carry_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hive_backup.config import Config
    from hive_backup.discover import secret_files

    monkeypatch.setenv("HIVE_HOME", str(tmp_path))
    app = typer.Typer()
    cli.register(app)
    runner = CliRunner()
    got = runner.invoke(app, ["login", "set-token"], input="sk-ant-oat01-every\n")
    assert got.exit_code == 0, got.output
    got = runner.invoke(app, ["login", "set-token", "--agent", "alice"], input="sk-ant-oat01-alice\n")
    assert got.exit_code == 0, got.output
    assert "sk-ant" not in got.output
    assert runner.invoke(app, ["login", "set-token", "--agent", "../x"], input="t\n").exit_code == 2
    assert tokens.read(tokens.fleet_path(tmp_path)) == "sk-ant-oat01-every"
    assert tokens.read(tokens.agent_path(tmp_path / "agents/alice/creds")) == "sk-ant-oat01-alice"
    found = secret_files(tmp_path, Config())
    assert "secrets/oauth-token" in found and "agents/alice/creds/oauth-token" in found  # encrypted with the secrets


def test_doctor_names_agents_without_credentials(tmp_path: Path) -> None:
    (tmp_path / "agents" / "alice" / "creds").mkdir(parents=True)
    (tmp_path / "agents" / "bob" / "creds").mkdir(parents=True)
    tokens.write(tokens.agent_path(tmp_path / "agents/bob/creds"), "sk-ant-oat01-bob")
    checks = {c.name: c for c in check_credentials(tmp_path, {})}
    assert not checks["credentials:alice"].ok and "set-token --agent alice" in (checks["credentials:alice"].fix or "")
    assert checks["credentials:bob"].ok
    assert all(c.ok for c in check_credentials(tmp_path, {"ANTHROPIC_API_KEY": "k"}))
    assert pinned_version(ROOT) is not None


def test_doctor_json(tmp_path: Path) -> None:
    env = {**os.environ, "HIVE_HOME": str(tmp_path), "HIVE_NATS_URL": "nats://127.0.0.1:9",
           "HIVE_AGENT_CMD": str(tmp_path / "no-such-claude")}
    out = subprocess.run([sys.executable, "-m", "hivewire.cli", "doctor", "--json"], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert out.returncode == 1
    assert not checks["agent_cli"]["ok"] and "scripts/install" in checks["agent_cli"]["fix"]
    assert not checks["nats"]["ok"] and checks["nats"]["fix"]
    assert {"sandbox", "cgroup_limits", "disk", "port:dashboard"} <= set(checks)


def test_progress_counts_a_busy_tree_not_an_idle_one() -> None:
    cfg = liveness.StallConfig(stall_s=1, kill_s=2)
    busy = subprocess.Popen([sys.executable, "-c", "import time\nprint('up', flush=True)\nt = time.time()\n"
                             "while time.time() - t < 30: pass"], stdout=subprocess.PIPE)
    idle = subprocess.Popen([sys.executable, "-c", "import time\nprint('up', flush=True)\ntime.sleep(30)"],
                            stdout=subprocess.PIPE)
    try:
        assert busy.stdout and idle.stdout and busy.stdout.readline() == idle.stdout.readline() == b"up\n"
        clock = [0.0]
        pb, pi = liveness.Progress(cfg, lambda: clock[0]), liveness.Progress(cfg, lambda: clock[0])
        pb.check(busy.pid), pi.check(idle.pid)
        time.sleep(0.5)  # real CPU time must pass for the busy one to show any
        clock[0] = 1.0
        assert pb.check(busy.pid) == 0.0  # spent CPU: progress now
        assert pi.check(idle.pid) == 1.0  # nothing since the start
        pi.line()
        assert pi.check(idle.pid) == 0.0  # a stream-json line is progress too
    finally:
        for p in (busy, idle):
            p.kill()
            p.communicate()
