"""Every `HIVE_*` environment variable, declared once: name, type, default, one line of
doc, and which services read it. `docs/configuration.md` is generated from this module
(`python -m hivewire.configdoc --write`; tests/lib/test_config.py fails while it is stale).

A service reads a variable with `VAR.get(env)` (env defaults to `os.environ`): unset
or blank gives the default; a value the variable does not accept raises `ConfigError`,
whose message names the variable and what it accepts
(`HIVE_BROKER_SYNC=fulll: must be one of normal, full`), and `run_service` stops the
process with it instead of running on a guess.

What a variable is, and its kinds, are in hivewire.configvar. A secret's value (a
password, a token) is never printed: not in a `ConfigError`, not in the docs.
tests/lib/test_config.py fails when a module spells a `HIVE_*` name not declared here,
or reads a declared one without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hivewire.configvar import ALL as ALL
from hivewire.configvar import VARS as VARS
from hivewire.configvar import ConfigError as ConfigError
from hivewire.configvar import Var as Var
from hivewire.configvar import (
    address,
    choice,
    flag,
    integer,
    limit,
    number,
    optional,
    optional_integer,
    path,
    size,
    text,
)
from hivewire.configvar import check as check
from hivewire.configvar import check_or_exit as check_or_exit

# --- shared by every service (hivewire.settings.Settings) ---------------------------------
HOME = path("HIVE_HOME", "where Hive keeps everything (0700)", (ALL,),
            default_doc="~/.local/share/hive")
NATS_URL = optional("HIVE_NATS_URL", "the NATS server; unset: the one `hive up` started (run/nats.url), "
                    "else nats://127.0.0.1:4222", (ALL,), accepts="a NATS URL")
NATS_CREDS = optional("HIVE_NATS_CREDS", "the NATS credentials file to connect with (`none`: no credentials)",
                      (ALL,), accepts="a path, or none")
NATS_USER = optional("HIVE_NATS_USER", "the NATS user to connect as (with HIVE_NATS_PASSWORD)", (ALL,))
NATS_PASSWORD = optional("HIVE_NATS_PASSWORD", "HIVE_NATS_USER's password (read at connect time only)", (ALL,),
                         secret=True)
NATS_INBOX_PREFIX = optional("HIVE_NATS_INBOX_PREFIX", "the reply-inbox prefix NATS permissions allow this user",
                             (ALL,))
DASHBOARD_ADDR = text("HIVE_DASHBOARD_ADDR", "127.0.0.1:8000", "where the dashboard listens (host:port)",
                      ("dashboard", "cli"))
OPERATOR_TOKEN = optional("HIVE_OPERATOR_TOKEN", "the dashboard's operator token (else run/operator.token)",
                          ("dashboard", "cli"), secret=True)
AGENT_CMD = text("HIVE_AGENT_CMD", "claude", "the agent CLI a harness runs (shell words)", ("harness",))
EVENTS_DB = optional("HIVE_EVENTS_DB", "the harness's events sqlite file (else <state>/events.sqlite)",
                     ("harness",), accepts="a path")
MODEL_FILE = optional("HIVE_MODEL_FILE", "a file naming the model the agent runs", ("harness",),
                      accepts="a path")
CONTEXT_WINDOW = optional_integer("HIVE_CONTEXT_WINDOW", "the agent model's context window in tokens "
                                  "(unset: the model's known one)", ("harness",))
METRICS_ADDR = optional("HIVE_METRICS_ADDR", "where /metrics listens (host:port; unset: the service's "
                        "default port on 127.0.0.1)", (ALL,), accepts="host:port")
LOG_LEVEL = choice("HIVE_LOG_LEVEL", ("debug", "info", "warning", "warn", "error", "critical"), "info",
                   "the log level (the `hive` CLI defaults to warning)", (ALL,))

# --- Prometheus discovery of agents (hivewire.promsd) ------------------------------------
PROMSD_FILE = optional("HIVE_PROMSD_FILE", "where the agents' file_sd targets are written (else "
                       "HIVE_HOME/prometheus/agents.json)", ("deployer", "agenthost"), accepts="a path")
PROMSD_HOST = text("HIVE_PROMSD_HOST", "", "the host Prometheus scrapes harnesses at (a container's name; blank: "
                   "the announced URL's host)", ("deployer", "harness", "agenthost"))

# --- the dashboard (hive_dashboard.config.DashboardConfig) --------------------------------
_D = ("dashboard",)
DASHBOARD_INSECURE_COOKIE = flag("HIVE_DASHBOARD_INSECURE_COOKIE", False,
                                 "the session cookie without Secure (plain http from another machine)", _D)
DASHBOARD_PING_S = number("HIVE_DASHBOARD_PING_S", 15.0, "SSE keep-alive comment interval", _D, positive=True)
DASHBOARD_STALE_S = number("HIVE_DASHBOARD_STALE_S", 10.0, "a heartbeat older than this means an agent is dead", _D,
                           positive=True)
DASHBOARD_SSE_BUFFER = integer("HIVE_DASHBOARD_SSE_BUFFER", 2000, "recent SSE events kept for a resuming client",
                               _D, positive=True)
DASHBOARD_ALLOWED_HOSTS = text("HIVE_DASHBOARD_ALLOWED_HOSTS", "",
                               "extra Host header names the dashboard answers (comma-separated; docs/dashboard.md)",
                               _D)
DEMO = flag("HIVE_DEMO", False, "set by `hive demo`: agents talk to the simulator; the dashboard shows a banner",
            ("dashboard", "harness"))

# --- the deployer (hive_deployer; the agent host runs its per-agent machinery too) --------
_DP = ("deployer",)
_DPA = ("deployer", "agenthost")
DEPLOYER_BASE_FLAKE = text("HIVE_DEPLOYER_BASE_FLAKE", "path:/etc/hive/nix", "the nix flake agents' configs build on",
                           _DPA)
DEPLOYER_HARNESS_CMD = text("HIVE_DEPLOYER_HARNESS_CMD", "", "the command that starts a harness (blank: this "
                            "Python's hive_harness)", _DPA)
DEPLOYER_STOP_TIMEOUT_S = number("HIVE_DEPLOYER_STOP_TIMEOUT_S", 8.0, "a stopping harness gets this long before "
                                 "SIGKILL", _DPA, positive=True)
DEPLOYER_PRESENCE_STALE_S = number("HIVE_DEPLOYER_PRESENCE_STALE_S", 20.0, "a harness silent this long is "
                                   "unhealthy", _DPA, positive=True)
DEPLOYER_BACKOFF_BASE_S = number("HIVE_DEPLOYER_BACKOFF_BASE_S", 1.0, "a crashed harness restarts after this, "
                                 "doubling", _DPA, minimum=0)
DEPLOYER_BACKOFF_MAX_S = number("HIVE_DEPLOYER_BACKOFF_MAX_S", 60.0, "...up to this", _DPA, minimum=0)
HARNESS_POOL = flag("HIVE_HARNESS_POOL", True, "agents' harnesses share one pool process (hive_deployer.pool)",
                    _DPA)
DEPLOYER_RUNTIME = choice("HIVE_DEPLOYER_RUNTIME", ("bwrap", "process", "podman", "docker", "nixos-container"),
                          "bwrap", "how harnesses run (process: unconfined, needs HIVE_ALLOW_UNCONFINED=1)", _DPA)
DEPLOYER_IMAGE = text("HIVE_DEPLOYER_IMAGE", "localhost/hive:latest", "the image of the podman/docker runtime",
                      _DPA)
SESSION_CMD = text("HIVE_SESSION_CMD", "", "the command a session runs (shell words; blank: the agent CLI "
                   "headless on the task)", _DP)
DEPLOYER_ENSURE_MANAGER = flag("HIVE_DEPLOYER_ENSURE_MANAGER", True, "the deployer creates the manager agent "
                               "when it is missing", _DP)
DEPLOYER_REGISTRY_SYNC_S = number("HIVE_DEPLOYER_REGISTRY_SYNC_S", 30.0, "how often the deployer re-sends its "
                                  "agents to the broker's registry", _DP, positive=True)
EVENTS_MAX_AGE_DAYS = number("HIVE_EVENTS_MAX_AGE_DAYS", 7.0, "agents' events older than this are pruned", _DP,
                             minimum=0)
EVENTS_KEEP = integer("HIVE_EVENTS_KEEP", 2000, "at most this many events kept per agent", _DP, minimum=0)
EVENTS_VACUUM_INTERVAL_S = number("HIVE_EVENTS_VACUUM_INTERVAL_S", 3600.0, "how often events are pruned", _DP,
                                  positive=True)
IMPORT_MAX_BYTES = integer("HIVE_IMPORT_MAX_BYTES", 2 * 1024**3, "an imported (or moved) agent archive's "
                           "largest unpacked size", _DPA, positive=True)
IMPORT_MAX_MEMBERS = integer("HIVE_IMPORT_MAX_MEMBERS", 100_000, "...and most files", _DPA, positive=True)

# --- more than one machine (hive_deployer.hosts, hive_agenthost) ---------------------------
HOST_NAME = text("HIVE_HOST_NAME", "core", "this machine's host name in the hive (the core's)", _DP)
HOST_LOST_S = number("HIVE_HOST_LOST_S", 10.0, "an agent host silent this long is lost", _DP, positive=True)
HOST_AGENT_LIMIT = integer("HIVE_HOST_AGENT_LIMIT", 0, "the most agents placed on this host (0: no limit)", _DPA,
                           minimum=0)
HOST_HEARTBEAT_S = number("HIVE_HOST_HEARTBEAT_S", 2.0, "how often an agent host reports", ("agenthost",),
                          positive=True)
HOST_METRICS_BIND = address("HIVE_HOST_METRICS_BIND", "the address an agent host's harnesses (and "
                            "hive-agenthost's /metrics, unless HIVE_METRICS_ADDR) listen on for the core's Prometheus "
                            "(blank: 127.0.0.1, and their ports are not reported)", ("agenthost",))
JOIN_ADDR = text("HIVE_JOIN_ADDR", "", "host:port of the join endpoint agent hosts join through (blank: no joins)",
                 _DP)
JOIN_URL = text("HIVE_JOIN_URL", "", "the join URL `hive host add` prints (blank: https://<HIVE_JOIN_ADDR>, http:// on "
                 "loopback)", _DP)
HOSTS_NATS_URLS = text("HIVE_HOSTS_NATS_URLS", "", "the NATS URLs joining hosts are given (comma-separated)", _DP)
HOSTS_NATS_PORT = integer("HIVE_HOSTS_NATS_PORT", 4222, "the NATS port joining hosts dial (set by hive up "
                          "--nats-listen)", _DP, positive=True)
TLS_SANS = text("HIVE_TLS_SANS", "", "more names and addresses (comma-separated) the core's TLS certificate "
                "covers (hivewire.tls)", ("deployer", "cli"))
NATS_CA = optional("HIVE_NATS_CA", "the CA (PEM) a TLS NATS server is checked against (unset: HIVE_HOME/tls/ca.pem "
                   "when present)", (ALL,), accepts="a path")

# --- the harness (hive_harness) ----------------------------------------------------------
_H = ("harness",)
AGENT = text("HIVE_AGENT", "", "the agent a harness runs (set by the deployer; required)", _H)
AGENT_CONFIG_ENV = text("HIVE_AGENT_CONFIG_ENV", "", "the agent's hive.env from its applied config, as JSON "
                        "(set by the deployer)", _H)
ALLOWED_TOOLS = optional("HIVE_ALLOWED_TOOLS", "the agent CLI's extra allowed tools (space/comma-separated; "
                         "unset: the defaults, set blank: none)", _H, blank=True)
HEARTBEAT_S = number("HIVE_HEARTBEAT_S", 3.0, "how often a harness publishes its presence", _H, positive=True)
CLAUDE_MAX_RETRIES = integer("HIVE_CLAUDE_MAX_RETRIES", 2, "the agent CLI's CLAUDE_CODE_MAX_RETRIES, unless set",
                             _H, minimum=0)
RATE_LIMIT_PARK_S = number("HIVE_RATE_LIMIT_PARK_S", 300.0,
                           "a rate-limited agent without a reset time parks this long", _H, minimum=0)
RATE_LIMIT_JITTER_S = number("HIVE_RATE_LIMIT_JITTER_S", 30.0,
                             "up to this much per-agent jitter after a usage limit resets", _H, minimum=0)
IDLE_RESET_S = number("HIVE_IDLE_RESET_S", 300.0,
                      "a session idle longer than this starts fresh (the prompt-cache lifetime)", _H, minimum=0)
WAKE_POLL_S = number("HIVE_WAKE_POLL_S", 30.0, "an idle harness asks the broker at least this often", _H,
                     minimum=0)
STALL_S = number("HIVE_STALL_S", 600.0, "a turn without CPU or I/O progress this long is stalled", _H,
                 positive=True)
STALL_KILL_S = number("HIVE_STALL_KILL_S", 0.0, "a turn stalled this long is cancelled", _H, positive=True,
                      default_doc="twice HIVE_STALL_S")
STALL_MIN_CPU = number("HIVE_STALL_MIN_CPU", 0.1, "CPU (cores) above this counts as progress", _H, positive=True)
STALL_MIN_IO = number("HIVE_STALL_MIN_IO", 16384.0, "I/O (bytes/s) above this counts as progress", _H,
                      positive=True)
RUNAWAY_TURNS_PER_HOUR = integer("HIVE_RUNAWAY_TURNS_PER_HOUR", 120,
                                 "more turns than this in an hour parks the agent as a runaway (0: off)", _H,
                                 minimum=0)
RUNAWAY_FAILED_TURNS = integer("HIVE_RUNAWAY_FAILED_TURNS", 5,
                               "this many failed turns in a row parks the agent as a runaway (0: off)", _H,
                               minimum=0)

# the agent's sandbox (hive_harness.sandbox, hive_harness.limits); the deployer's runtime sets the first three
SANDBOX = choice("HIVE_SANDBOX", ("bwrap", "none"), "bwrap", "how the harness confines its agent's CLI (none: "
                 "unconfined, needs HIVE_ALLOW_UNCONFINED=1)", _H)
ALLOW_UNCONFINED = choice("HIVE_ALLOW_UNCONFINED", ("0", "1"), "0", "1: agents may run unconfined "
                          "(HIVE_SANDBOX=none, the process runtime)", ("harness", "deployer", "agenthost"))
SANDBOX_ALLOW_HOSTS = text("HIVE_SANDBOX_ALLOW_HOSTS", "", "hosts (host:port, comma-separated) a confined "
                           "agent may reach besides the model API", _H)
SANDBOX_ENV_ALLOW = text("HIVE_SANDBOX_ENV_ALLOW", "", "more variable names an agent's hive.env may set on its CLI "
                         "(comma-separated)", ("harness", "deployer", "agenthost"))
SANDBOX_RO_PATHS = text("HIVE_SANDBOX_RO_PATHS", "", "more host paths the sandbox mounts read-only "
                        "(colon-separated)", _H)
BWRAP = optional("HIVE_BWRAP", "the bubblewrap binary (else bwrap on PATH)", _H, accepts="a path")

SANDBOX_PIDS_MAX = limit("HIVE_SANDBOX_PIDS_MAX", 1024, "the most processes an agent's sandbox may run", _H)
SANDBOX_MEMORY_MAX = size("HIVE_SANDBOX_MEMORY_MAX", 4 << 30, "the memory an agent's sandbox may use", _H,
                          default_doc="4G")
SANDBOX_CGROUP = optional("HIVE_SANDBOX_CGROUP", "the cgroup (v2 path) agents' cgroups are made under (else the "
                          "harness's own)", _H, accepts="a cgroup path")

# --- set by Hive for what it starts (documented here; Hive's services do not read them) ----
_CLI = ("agent CLI",)
_SES = ("session",)
STATE_DIR = text("HIVE_STATE_DIR", "", "the agent's state directory (set by the harness for its CLI's tools)", _CLI)
DEPLOYED_REV = text("HIVE_DEPLOYED_REV", "", "the agent's applied config revision (set by the deployer)",
                    ("harness", *_CLI))
SESSION_ID = text("HIVE_SESSION_ID", "", "the session's id (set by the deployer for a session's command)", _SES)
SESSION_TASK = text("HIVE_SESSION_TASK", "", "the session's task", _SES)
SESSION_PRIORITY = text("HIVE_SESSION_PRIORITY", "", "the session's priority", _SES)
SESSION_DIR = text("HIVE_SESSION_DIR", "", "the session's directory", _SES)
SESSION_OUTPUT = text("HIVE_SESSION_OUTPUT", "", "where the session writes its output", _SES)
SESSION_METADATA = text("HIVE_SESSION_METADATA", "", "the session's metadata, as JSON", _SES)

# --- the broker (hive_broker.config.BrokerConfig) -----------------------------------------
_B = ("broker",)
BROKER_INFLIGHT_TIMEOUT_S = number("HIVE_BROKER_INFLIGHT_TIMEOUT_S", 3600.0,
                                   "a message in flight this long without an ack is put back", _B, positive=True)
BROKER_RETENTION_DAYS = number("HIVE_BROKER_RETENTION_DAYS", 30.0, "acked messages older than this go", _B,
                               positive=True)
BROKER_RETENTION_INTERVAL_S = number("HIVE_BROKER_RETENTION_INTERVAL_S", 3600.0, "how often retention runs", _B,
                                     positive=True)
BROKER_TICK_S = number("HIVE_BROKER_TICK_S", 5.0, "the scheduler (reminders, deadlines) sleeps at most this", _B,
                       positive=True)
BROKER_GAUGES_S = number("HIVE_BROKER_GAUGES_S", 5.0, "how often gauges (inbox depth, ...) are refreshed", _B,
                         positive=True)
BROKER_INDEX_S = number("HIVE_BROKER_INDEX_S", 1.0, "new messages become searchable within this long", _B,
                        positive=True)
BROKER_INDEX_BUSY_RATE = number("HIVE_BROKER_INDEX_BUSY_RATE", 1000.0,
                                "while sends arrive faster than this per second, indexing waits", _B, positive=True)
BROKER_INDEX_MAX_LAG = integer("HIVE_BROKER_INDEX_MAX_LAG", 100_000,
                               "...until the index lags this many messages behind", _B, positive=True)
BROKER_DEDUP_WINDOW_S = number("HIVE_BROKER_DEDUP_WINDOW_S", 86400.0,
                               "a retried send with the same client id is stored once within this window", _B,
                               positive=True)
BROKER_DEDUP_MAX = integer("HIVE_BROKER_DEDUP_MAX", 100_000, "at most this many client ids remembered", _B,
                           positive=True)
BROKER_FIRST_TURN = integer("HIVE_BROKER_FIRST_TURN", 16,
                            "of sends arriving together, this many are committed and answered first", _B,
                            positive=True)
BROKER_SYNC = choice("HIVE_BROKER_SYNC", ("normal", "full"), "normal",
                     "durability: normal survives kill -9, full also power loss (docs/broker.md)", _B)


def home(env: Mapping[str, str] | None = None) -> Path:
    """`HIVE_HOME`, or its default under the user's home."""
    return HOME.get(env) or Path.home() / ".local/share/hive"
