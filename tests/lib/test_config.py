"""hivewire.config: every HIVE_* variable declared once, read through it, documented.

No exceptions: every `HIVE_*` name the code spells is declared, and no module reads one
itself (`os.environ["HIVE_X"]`, `env.get("HIVE_X")`, `os.getenv(NAME)`, `"HIVE_X" in env`)
instead of `config.X.get(env)`. Passing an environment on to a child process is not
reading it and is not flagged: `hivewire.agentenv.harness_env` copies the declared
variables to an agent's harness, the harness pool and `hive up` copy or blank names they
list, and a service sets `env["HIVE_X"] = ...` for what it starts.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hivewire import agentenv, config, configdoc
from hivewire.config import ConfigError
from hivewire.configvar import Var
from hivewire.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

NOT_VARIABLES = {"HIVE_LEDGER"}  # spelled like one, but a JetStream stream's name (hivewire.subjects)
_NAME = re.compile(r"""["'](HIVE_[A-Z0-9_]*[A-Z0-9])["']""")
_VAR = re.compile(r"HIVE_[A-Z0-9_]*[A-Z0-9]")


def sources() -> list[Path]:
    files = [*ROOT.glob("services/*/hive_*/**/*.py"), *ROOT.glob("libs/hivewire/hivewire/**/*.py")]
    mine = {"config.py", "configvar.py", "configdoc.py"}
    return [p for p in files if p.name not in mine or "hivewire/hivewire" not in str(p)]


def direct_reads(code: str) -> list[tuple[int, str]]:
    """(line, name) of each `HIVE_*` variable `code` reads itself: a `.get(K)` or `getenv(K)`
    call, a subscript `e[K]` read, or a test `K in e` / `k == K`, where K is the name or a
    name bound to it (`NAME = "HIVE_X"`)."""
    tree = ast.parse(code)
    bound = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
             and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
             and _VAR.fullmatch(n.value.value) for t in n.targets if isinstance(t, ast.Name)}

    def var(e: ast.expr) -> str | None:
        if isinstance(e, ast.Constant) and isinstance(e.value, str) and _VAR.fullmatch(e.value):
            return e.value
        return bound.get(e.id) if isinstance(e, ast.Name) else None

    found = []
    for n in ast.walk(tree):
        keys: list[ast.expr] = []
        if isinstance(n, ast.Call) and n.args:
            f = n.func
            if (isinstance(f, ast.Attribute) and f.attr in ("get", "getenv")) or (
                    isinstance(f, ast.Name) and f.id == "getenv"):
                keys = [n.args[0]]
        elif isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load):
            keys = [n.slice]
        elif isinstance(n, ast.Compare) and any(isinstance(o, (ast.In, ast.NotIn, ast.Eq, ast.NotEq)) for o in n.ops):
            keys = [n.left, *n.comparators]
        found += [(n.lineno, v) for v in map(var, keys) if v]
    return found


def test_every_hive_variable_is_declared() -> None:
    spelled = {m.group(1) for p in sources() for m in _NAME.finditer(p.read_text())}
    assert {"HIVE_NATS_CREDS", "HIVE_AGENT"} <= spelled  # the scan sees the code
    undeclared = spelled - set(config.VARS) - NOT_VARIABLES
    assert undeclared == set(), f"declare these in hivewire.config: {sorted(undeclared)}"


def test_no_module_reads_a_hive_variable_itself() -> None:
    direct: dict[str, set[str]] = {}
    for p in sources():
        for _, name in direct_reads(p.read_text()):
            direct.setdefault(str(p.relative_to(ROOT)), set()).add(name)
    assert direct == {}, "read these through hivewire.config (config.X.get(env))"


def test_the_read_check_sees_every_form_of_read() -> None:
    code = (
        'import os\nNAME = "HIVE_A"\n'
        'os.environ["HIVE_B"]\nos.getenv("HIVE_C")\nenv.get(NAME)\n"HIVE_D" in os.environ\n'
        '{k: v for k, v in env.items() if k == "HIVE_E"}\n'
        'env["HIVE_F"] = "1"\nos.environ.setdefault("HIVE_G", "1")\nchild = {**os.environ, "HIVE_H": "1"}\n'
    )
    assert sorted(name for _, name in direct_reads(code)) == ["HIVE_A", "HIVE_B", "HIVE_C", "HIVE_D", "HIVE_E"]


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


def test_secrets_are_never_shown() -> None:
    secrets = {name for name, var in config.VARS.items() if var.secret}
    assert {"HIVE_OPERATOR_TOKEN", "HIVE_NATS_PASSWORD"} <= secrets
    doc = configdoc.markdown()
    for name in secrets:
        assert f"| `{name}` | any text | `(unset)` |" in doc
    pin = Var("HIVE_TEST_PIN", int, 0, "an integer", "a test's secret", ("test",), secret=True)
    with pytest.raises(ConfigError, match=r"^HIVE_TEST_PIN=\(secret\): must be an integer$") as err:
        pin.get({"HIVE_TEST_PIN": "hunter2"})
    assert "hunter2" not in str(err.value)
    assert pin.shown_default() == "(secret)"


def test_a_harness_inherits_the_declared_variables_but_no_identity_or_secret() -> None:
    secrets = {name for name, var in config.VARS.items() if var.secret}
    assert secrets <= agentenv.HARNESS_NEVER
    env = {"HIVE_HEARTBEAT_S": "2", "HIVE_LOG_LEVEL": "debug", "HIVE_OPERATOR_TOKEN": "t", "HIVE_NATS_CREDS": "/c",
           "HIVE_NATS_USER": "svc_deployer", "HIVE_NATS_PASSWORD": "p", "HIVE_NATS_INBOX_PREFIX": "_INBOX_x",
           "HIVE_BACKUP_PASSPHRASE": "not a variable of Hive's", "PATH": "/usr/bin", "SSH_AUTH_SOCK": "/s"}
    assert agentenv.harness_env(env) == {"HIVE_HEARTBEAT_S": "2", "HIVE_LOG_LEVEL": "debug", "PATH": "/usr/bin"}
