"""hivewire: the library every Hive service shares.

The public surface is what `__all__` lists (tested in tests/unit); modules
not re-exported here are internal.
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
