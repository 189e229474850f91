"""hivewire: the library every Hive service shares.

The public surface is what `__all__` lists, plus these modules, which services
import by name (tests/lib/test_public_api.py checks this list against what
services import, and `lint-imports` forbids the internal ones):

Public modules:
    agentenv        the environment a harness and its agent get
    cli.app         the `hive` typer app and the CLI helpers service plugins use
    cli.up          `run_up`, for a service's own `up` (the harness demo)
    cli.upready     `hive up`'s free ports and waiting for its dashboard
    codec           msgspec encode/decode of wire structs
    config          every `HIVE_*` variable, declared once (`config.BROKER_SYNC.get()`)
    confine         whether bwrap works here, and how to fix it
    db              `Database`, `connect`, `in_batches`
    errors          `HiveError`
    hostauth        NATS identities of agent hosts and their join tokens
    logs            `configure_logging`
    migrations      `Migrations`, `ensure_columns`, `DatabaseSpec`
    names           agent name rules and reserved names
    nats_transport  `NatsTransport`
    natsauth        NATS accounts and permissions derived from the op registry
    procs           child processes: free ports, parent-death signal, stopping by pid
    promsd          Prometheus file service discovery
    runner          `run_service`, `serve`
    safegit         git run without hooks or config from the repository
    service         `MicroService`, `Endpoint`, `HiveClient`, `Context`
    settings        `Settings`
    subjects        subject helpers
    tasks           `cancel_and_wait`
    tls             the core's CA and certificate, TLS contexts, the CA fingerprint
    transport       the `Transport` protocol, `MemoryTransport`
    wire            the wire types (`wire.<domain>`) and the op registry (`wire.ops`)

Every other module (supervisor, natsd, metrics, contract, configdoc, cli's other commands)
is internal: reach it through `__all__` or not at all.
"""

from hivewire import codec, subjects, wire
from hivewire.db import Database, connect
from hivewire.errors import HiveError
from hivewire.logs import configure_logging
from hivewire.metrics import serve_metrics
from hivewire.migrations import DatabaseSpec, Migration, Migrations, ensure_columns
from hivewire.names import AGENT_NAME_RE, BROADCAST, MANAGER, OPERATOR, is_agent_name, validate_agent_name
from hivewire.nats_transport import NatsTransport, connect_nats
from hivewire.natsd import NatsServer
from hivewire.runner import run_service, serve
from hivewire.service import BatchEndpoint, Context, Endpoint, HiveClient, MicroService
from hivewire.settings import Settings
from hivewire.transport import MemoryTransport, Msg, Transport

__version__ = "0.1.0"

__all__ = [
    "AGENT_NAME_RE",
    "BROADCAST",
    "MANAGER",
    "OPERATOR",
    "BatchEndpoint",
    "Context",
    "Database",
    "DatabaseSpec",
    "Endpoint",
    "HiveClient",
    "HiveError",
    "MemoryTransport",
    "MicroService",
    "Migration",
    "Migrations",
    "Msg",
    "NatsServer",
    "NatsTransport",
    "Settings",
    "Transport",
    "__version__",
    "codec",
    "configure_logging",
    "connect",
    "connect_nats",
    "ensure_columns",
    "is_agent_name",
    "run_service",
    "serve",
    "serve_metrics",
    "subjects",
    "validate_agent_name",
    "wire",
]
