"""hivewire.config: every HIVE_* variable declared once, read through it, documented.

The two gap lists below are what is not migrated yet: kept exact (a newly migrated
variable must leave them, a new undeclared one fails), so the gap stays visible.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hivewire import config, configdoc
from hivewire.config import ConfigError
from hivewire.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# HIVE_* names the code spells that hivewire.config does not declare yet (issue 22 item 6).
NOT_YET_DECLARED = {
    "HIVE_BACKUP_PASSPHRASE", "HIVE_DASHBOARD_TOKEN",
}

# Declared variables some module still reads itself (`.get("HIVE_X")`) instead of through
# hivewire.config: name -> the files doing so.
READ_DIRECTLY = {
    "HIVE_AGENT": {"libs/hivewire/hivewire/natsauth.py"},
    "HIVE_AGENT_CONFIG_ENV": {"services/deployer/hive_deployer/placement.py"},
    "HIVE_AGENT_CMD": {"services/harness/hive_harness/demo.py"},
    "HIVE_HOME": {"libs/hivewire/hivewire/natsauth.py"},
    "HIVE_NATS_CREDS": {
        "libs/hivewire/hivewire/hostauth.py", "libs/hivewire/hivewire/natsauth.py",
        "services/deployer/hive_deployer/lifecycle.py",  # reads the credentials natsauth issued, not the environment
    },
    "HIVE_NATS_INBOX_PREFIX": {"libs/hivewire/hivewire/natsauth.py"},
    "HIVE_NATS_PASSWORD": {"libs/hivewire/hivewire/natsauth.py"},
    "HIVE_NATS_USER": {"libs/hivewire/hivewire/natsauth.py"},
}

NOT_VARIABLES = {"HIVE_LEDGER"}  # spelled like one, but a JetStream stream's name (hivewire.subjects)
_NAME = re.compile(r"""["'](HIVE_[A-Z0-9_]*[A-Z0-9])["']""")
_READ = re.compile(r"""(?:\.get|getenv)\(\s*["'](HIVE_[A-Z0-9_]*[A-Z0-9])["']""")


def sources() -> list[Path]:
    files = [*ROOT.glob("services/*/hive_*/**/*.py"), *ROOT.glob("libs/hivewire/hivewire/**/*.py")]
    return [p for p in files if p.name not in ("config.py", "configdoc.py") or "hivewire/hivewire" not in str(p)]


def test_every_hive_variable_is_declared_or_listed_as_not_yet() -> None:
    spelled = {m.group(1) for p in sources() for m in _NAME.finditer(p.read_text())}
    assert "HIVE_BROKER_SYNC" not in spelled  # the broker reads it through hivewire.config
    undeclared = spelled - set(config.VARS) - NOT_VARIABLES
    assert undeclared == NOT_YET_DECLARED, (
        f"declare these in hivewire.config: {sorted(undeclared - NOT_YET_DECLARED)}; "
        f"now declared, drop from NOT_YET_DECLARED: {sorted(NOT_YET_DECLARED - undeclared)}"
    )
    assert not NOT_YET_DECLARED & set(config.VARS)


def test_declared_variables_read_elsewhere_are_listed() -> None:
    direct: dict[str, set[str]] = {}
    for p in sources():
        for m in _READ.finditer(p.read_text()):
            if m.group(1) in config.VARS:
                direct.setdefault(m.group(1), set()).add(str(p.relative_to(ROOT)))
    assert direct == READ_DIRECTLY


def test_the_docs_are_generated_from_the_declarations() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == configdoc.markdown(), "docs/configuration.md is stale: run python -m hivewire.configdoc --write"
    for name, var in config.VARS.items():
        assert f"| `{name}` | {var.accepts} |" in doc
        assert var.doc and var.services, name


def test_unset_or_blank_is_the_default_and_a_bad_value_names_the_variable() -> None:
    for name, var in config.VARS.items():
        assert var.get({}) == var.default
        if not var.blank:
            assert var.get({name: "  "}) == var.default
    with pytest.raises(ConfigError, match=r"^HIVE_BROKER_SYNC=fulll: must be one of normal, full$"):
        config.BROKER_SYNC.get({"HIVE_BROKER_SYNC": "fulll"})
    with pytest.raises(ConfigError, match=r"^HIVE_BROKER_TICK_S=0: must be a positive number$"):
        config.BROKER_TICK_S.get({"HIVE_BROKER_TICK_S": "0"})
    with pytest.raises(ConfigError, match=r"^HIVE_BROKER_TICK_S=nan: must be a positive number$"):
        config.BROKER_TICK_S.get({"HIVE_BROKER_TICK_S": "nan"})
    with pytest.raises(ConfigError, match=r"^HIVE_CONTEXT_WINDOW=big: must be a positive integer$"):
        Settings.from_env({"HIVE_CONTEXT_WINDOW": "big"})
    with pytest.raises(ConfigError, match=r"^HIVE_LOG_LEVEL=chatty: must be one of debug, info, warning"):
        Settings.from_env({"HIVE_LOG_LEVEL": "chatty"})
    assert config.BROKER_TICK_S.get({"HIVE_BROKER_TICK_S": " 0.5 "}) == 0.5


def test_limits_where_zero_or_blank_means_none() -> None:
    mem, pids = config.SANDBOX_MEMORY_MAX, config.SANDBOX_PIDS_MAX
    assert (mem.get({}), pids.get({})) == (4 << 30, 1024)
    assert (mem.get({mem.name: "512M"}), pids.get({pids.name: "64"})) == (512 << 20, 64)
    for off in ("0", ""):
        assert (mem.get({mem.name: off}), pids.get({pids.name: off})) == (None, None)
    with pytest.raises(ConfigError, match=r"^HIVE_SANDBOX_MEMORY_MAX=lots: must be a size like 4G, 512M or bytes"):
        mem.get({mem.name: "lots"})
    with pytest.raises(ConfigError, match=r"^HIVE_SANDBOX_PIDS_MAX=-1: must be a whole number \(0: no limit\)$"):
        pids.get({pids.name: "-1"})


def test_settings_keep_their_defaults(tmp_path: Path) -> None:
    s = Settings.from_env({})
    assert s.home == Path.home() / ".local/share/hive"
    assert (s.nats_url, s.dashboard_addr, s.agent_cmd, s.log_level, s.context_window) == (
        None, "127.0.0.1:8000", "claude", "info", None)
    s = Settings.from_env({"HIVE_HOME": str(tmp_path), "HIVE_LOG_LEVEL": "WARNING", "HIVE_CONTEXT_WINDOW": "200000"})
    assert (s.home, s.log_level, s.context_window) == (tmp_path, "warning", 200000)


def test_a_bad_value_stops_a_service_before_it_starts(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HIVE_HOME": str(tmp_path), "HIVE_BROKER_SYNC": "fulll",
           "HIVE_NATS_URL": "nats://127.0.0.1:1"}
    proc = subprocess.run([sys.executable, "-m", "hive_broker"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "hive-broker: HIVE_BROKER_SYNC=fulll: must be one of normal, full"
