"""The wire contract: msgspec structs for every payload on NATS."""

from hivewire.wire import agent, backup, broker, deployer
from hivewire.wire.common import Empty, ErrorBody, ErrorReply, Ok, Wire

__all__ = ["Empty", "ErrorBody", "ErrorReply", "Ok", "Wire", "agent", "backup", "broker", "deployer"]
