"""The agent's hive tools served over a unix socket, one MCP session per connection.

The agent CLI inside the sandbox starts `mcp_relay.js` as its `hive` MCP
server (stdio); the relay connects here. Messages are newline-delimited
JSON-RPC, exactly as on stdio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from hive_harness import metrics
from hive_harness.mcp_bridge import LazyServer

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

log = structlog.get_logger("hive_harness.mcp_socket")
MAX_LINE = 16 * 1024 * 1024


class McpSocketServer:
    def __init__(self, path: Path, server: MCPServer | LazyServer) -> None:
        self.path, self.server = path, server
        self._srv: asyncio.AbstractServer | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self.sessions_served = 0

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._srv = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE)
        os.chmod(self.path, 0o600)  # the sandbox's user is the harness's own uid, mapped

    async def close(self) -> None:
        if self._srv is not None:
            self._srv.close()
            for t in list(self._sessions):
                t.cancel()
            await asyncio.gather(*self._sessions, return_exceptions=True)
            self._srv = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self.sessions_served += 1
        try:
            server = self.server.get() if isinstance(self.server, LazyServer) else self.server
            await serve_streams(server, reader, writer)
        except Exception as exc:  # one session failing never takes the harness down
            metrics.FAILURES.labels("mcp_session").inc()
            log.warning("mcp_session_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def serve_streams(server: MCPServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One MCP session over a byte stream (what `mcp.server.stdio` does for stdin/stdout)."""
    import anyio  # here, not at import: an idle harness never loads the mcp package (mcp_bridge.LazyServer)
    import mcp_types as types
    from mcp.shared._context_streams import create_context_streams
    from mcp.shared.message import SessionMessage

    read_w, read_s = create_context_streams[SessionMessage | Exception](0)
    write_s, write_r = create_context_streams[SessionMessage](0)

    async def rx() -> None:
        async with read_w:
            while line := await reader.readline():
                try:
                    msg = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:
                    await read_w.send(exc)
                    continue
                await read_w.send(SessionMessage(msg))

    async def tx() -> None:
        async with write_r:
            async for sm in write_r:
                writer.write(sm.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n")
                await writer.drain()

    low: Any = server._lowlevel_server  # the same call MCPServer.run_stdio_async makes, on our streams
    async with anyio.create_task_group() as tg:
        tg.start_soon(rx)
        tg.start_soon(tx)
        await low.run(read_s, write_s, low.create_initialization_options())
        tg.cancel_scope.cancel()
