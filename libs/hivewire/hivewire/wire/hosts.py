"""Many hosts (issue 26): the hub's host registry, joins, heartbeats, and the
requests the deployer forwards to an agent host's `hive-agenthost`.

Subjects (hivewire.subjects, "hosts"): `hive.hosts.{add,remove,list}`
(operator -> deployer), `hive.host.<host>.{start,stop}` (deployer -> agent
host), `hive.host.<host>.up.{heartbeat,creds}` (agent host -> deployer).
"""

from __future__ import annotations

from typing import Any, Literal

from hivewire.wire.common import Wire

HostState = Literal["invited", "online", "lost", "removed"]


class HostAddRequest(Wire, kw_only=True):
    name: str
    agent_limit: int = 0  # 0: the host's own HIVE_HOST_AGENT_LIMIT (its heartbeat says)
    ttl_s: float = 3600.0  # how long the join token is valid


class HostAddReply(Wire, kw_only=True):
    name: str
    token: str  # shown once; the hub keeps only its sha256
    expires_at: float
    join_url: str  # https://<hub>:<port> of the join endpoint (http:// when it listens on loopback only)
    command: str  # the line to run on the new host
    ca_sha256: str = ""  # the SHA-256 fingerprint of the core's CA, pinned by `hive host join` ("": no TLS)


class HostNameRequest(Wire, kw_only=True):
    name: str
    force: bool = False


class HostAgentInfo(Wire, kw_only=True):
    """One agent process on an agent host, as its heartbeat reports it."""

    name: str
    pid: int
    started_at: float  # the agent host's clock
    metrics_port: int = 0  # its harness's /metrics on HIVE_HOST_METRICS_BIND (0: none reported, or pooled)


class HostHeartbeat(Wire, kw_only=True):
    """`hive.host.<host>.up.heartbeat`, every HIVE_HOST_HEARTBEAT_S (2 s)."""

    host: str
    sent_at: float  # the agent host's clock
    version: str = ""
    mem_total: int = 0  # bytes (/proc/meminfo MemTotal)
    mem_available: int = 0  # bytes (MemAvailable)
    cpus: int = 0
    load1: float = 0.0
    agent_limit: int = 0
    runtime: str = ""
    agents: list[HostAgentInfo] = []
    exits: dict[str, str] = {}  # agent -> why its process ended last (not asked to)
    # /metrics ports on HIVE_HOST_METRICS_BIND (0: none reported): the hub scrapes them at the address
    # the host joined from, never at an address the host names (hivewire.promsd.set_host)
    metrics_port: int = 0  # hive-agenthost's own
    pool_metrics_port: int = 0  # the harness pool's (its agents together)


class HostInfo(Wire, kw_only=True):
    name: str
    state: HostState
    role: Literal["core", "agents"] = "agents"
    added_at: float = 0.0
    joined_at: float | None = None
    last_heartbeat: float | None = None  # the hub's clock
    version: str = ""
    runtime: str = ""
    mem_total: int = 0
    mem_available: int = 0
    cpus: int = 0
    load1: float = 0.0
    agent_limit: int = 0
    agents: list[str] = []  # placed here (any state but purged)
    running: int = 0
    token_expires_at: float | None = None


class HostList(Wire, kw_only=True):
    hosts: list[HostInfo]


class JoinRequest(Wire, kw_only=True):
    """POST /join on the hub's join endpoint (HTTP, not NATS: the new host has no NATS identity yet)."""

    name: str
    token: str


class JoinReply(Wire, kw_only=True):
    name: str
    nats_urls: list[str] = []  # as the hub advertises them (HIVE_HOSTS_NATS_URLS); empty: use the join URL's host
    nats_port: int = 4222
    creds: str  # the host's NATS credentials file (env-file syntax, hivewire.natsauth.creds_text)
    hub: str = ""  # the hub host's name


class HostStartRequest(Wire, kw_only=True):
    """`hive.host.<host>.start`: run this agent's harness there (no secret: it fetches its creds)."""

    agent: str
    rev: str = ""
    config_env: dict[str, str] = {}  # the agent's allowlisted hive.env (HIVE_AGENT_CONFIG_ENV)


class HostStopRequest(Wire, kw_only=True):
    agent: str
    hard: bool = False
    timeout: float = 8.0


class HostAgentReply(Wire, kw_only=True):
    agent: str
    pid: int | None = None
    at: float = 0.0  # the agent host's clock
    rc: int | None = None


class CredsRequest(Wire, kw_only=True):
    """`hive.host.<host>.up.creds`: the agent host asks for one of its agents' NATS credentials."""

    agent: str


class CredsReply(Wire, kw_only=True):
    agent: str
    creds: str  # env-file text; "" when the hub runs without NATS auth


# --- moving a stopped agent between hosts (`hive agents move`) ---------------------------------
class MoveRequest(Wire, kw_only=True):
    """Operator -> deployer: move a stopped agent's state/ and creds/ to host `to`."""

    name: str
    to: str


class PackRequest(Wire, kw_only=True):
    agent: str
    transfer: str  # 32 hex characters, chosen by the caller
    live: bool = False  # a backup's copy: the agent may be running (a move needs it stopped)


class PackReply(Wire, kw_only=True):
    agent: str
    transfer: str
    size: int  # bytes of the archive (.tar.gz of state/ and creds/)
    sha256: str  # of the archive
    tree: str  # sha256 over every file's path, size and sha256 (what the target must end up with)
    files: int


class ChunkRequest(Wire, kw_only=True):
    transfer: str
    offset: int
    length: int


class Chunk(Wire, kw_only=True):
    transfer: str
    offset: int
    data: bytes  # base64 in JSON


class CommitRequest(Wire, kw_only=True):
    agent: str
    transfer: str
    size: int
    sha256: str
    tree: str


class CommitReply(Wire, kw_only=True):
    agent: str
    tree: str
    files: int


class DropRequest(Wire, kw_only=True):
    """Delete a transfer's archive; with `files`, also the agent's state/ and creds/ on that host."""

    agent: str
    transfer: str
    files: bool = False


# --- sessions placed on an agent host (`hive session create --host H`) --------------------------
class HostSessionStart(Wire, kw_only=True):
    """Deployer -> agent host: run a session's command there, confined as on the core host."""

    session_id: str
    task: str
    priority: str = "medium"
    metadata: dict[str, Any] = {}
    args: list[str] = []


class HostSessionRef(Wire, kw_only=True):
    session_id: str
    offset: int = 0  # session_read: the next byte of its output wanted
    transfer: str = ""  # session_pack: 32 hex characters, chosen by the caller


class HostSessionStarted(Wire, kw_only=True):
    session_id: str
    pid: int | None = None
    error: str = ""  # the runtime could not start it (the session has failed)


class HostSessionOutput(Wire, kw_only=True):
    """What the session's command wrote (stdout and stderr) from `offset`; `done` with its exit code."""

    session_id: str
    offset: int
    data: bytes = b""  # base64 in JSON
    done: bool = False  # the command has ended and `data` reaches the end of its output
    rc: int | None = None
