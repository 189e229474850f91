"""The hub's join endpoint (issue 26): `POST /join`, over HTTPS beyond loopback.

A new host has no NATS identity yet, so it cannot ask over NATS; it sends
`{"name", "token"}` here (`hive host join URL --name N --token T --ca-sha256 F`)
and gets its NATS credentials back once. Listens on `HIVE_JOIN_ADDR` only when
set. With a certificate (hivewire.tls, the core's own CA) it serves HTTPS and
`GET /ca.pem`, the CA itself: the joining host checks it against the pinned
fingerprint, then verifies this server with it before it sends the token.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from hivewire import codec, tls
from hivewire.errors import HiveError
from hivewire.wire.hosts import JoinReply, JoinRequest

log = structlog.get_logger("hive_deployer.joinhttp")
MAX_BODY = 16 * 1024
STATUS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
          413: "Payload Too Large", 500: "Internal Server Error"}
CODE_STATUS = {"forbidden": 403, "not_found": 404, "bad_name": 400, "bad_request": 400}

Handler = Callable[[JoinRequest, str], Awaitable[JoinReply]]  # the request and its sender's IP address


class JoinServer:
    def __init__(self, addr: str, handler: Handler, cert: tls.CoreCert | None = None) -> None:
        host, _, port = addr.rpartition(":")
        self.host, self.port = host.strip("[]") or "0.0.0.0", int(port)
        self.handler = handler
        self.cert = cert
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        ctx: ssl.SSLContext | None = tls.server_context(self.cert) if self.cert else None
        self.server = await asyncio.start_server(self._serve, self.host, self.port, ssl=ctx,
                                                 ssl_handshake_timeout=10.0 if ctx else None)
        sock = self.server.sockets[0].getsockname()
        self.port = int(sock[1])
        log.info("join_endpoint_listening", addr=f"{self.host}:{self.port}", tls=bool(ctx))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = writer.get_extra_info("peername")
            addr = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            status, body = await asyncio.wait_for(self._handle(reader, addr), 10.0)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, ConnectionError):
            status, body = 400, {"error": {"code": "bad_request", "message": "malformed request"}}
        try:
            kind = "application/json"
            if isinstance(body, bytes):
                data, kind = body, "application/x-pem-file"
            else:
                data = json.dumps(body).encode()
            writer.write(f"HTTP/1.1 {status} {STATUS.get(status, 'Error')}\r\nContent-Type: {kind}\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, addr: str) -> tuple[int, object]:
        line = (await reader.readline()).decode("latin-1").split()
        headers: dict[str, str] = {}
        while True:
            h = (await reader.readline()).decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        if len(line) >= 2 and line[0] == "GET" and line[1] == "/ca.pem" and self.cert:
            return 200, self.cert.ca.read_bytes()  # public; the joining host checks its fingerprint
        if len(line) < 2 or line[1] != "/join":
            return 404, {"error": {"code": "not_found", "message": "POST /join"}}
        if line[0] != "POST":
            return 405, {"error": {"code": "bad_request", "message": "POST /join"}}
        size = int(headers.get("content-length", "0"))
        if size > MAX_BODY:
            return 413, {"error": {"code": "too_large", "message": "body too large"}}
        raw = await reader.readexactly(size)
        try:
            req = codec.decode(raw, JoinRequest)
            rep = await self.handler(req, addr)
        except HiveError as exc:
            return CODE_STATUS.get(exc.code, 500), {"error": {"code": exc.code, "message": exc.message}}
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return 400, {"error": {"code": "bad_request", "message": str(exc)}}
        except Exception:
            log.exception("join_failed")
            return 500, {"error": {"code": "internal", "message": "join failed"}}
        return 200, msgspec.to_builtins(rep)
