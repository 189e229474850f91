"""The sandbox's only way out: an HTTP proxy on a unix socket that lets through an allowlist.

The agent CLI inside the sandbox has no network but its own loopback; its
`HTTP(S)_PROXY` points at a relay there that forwards to this socket. Each
connection carries one proxy request:

- `CONNECT host:port` (HTTPS): tunnelled when `host:port` is allowed;
- `METHOD http://host:port/path` (plain HTTP, e.g. a local simulator): sent on
  to that origin in origin form with `Connection: close`, when allowed;
- anything else, or a destination not on the list: `403`/`400` with a line that
  says why, logged and counted.

The list: the model API the hive is configured with (`ANTHROPIC_BASE_URL`, or
Anthropic's API and login hosts when unset) plus `HIVE_SANDBOX_ALLOW_HOSTS`
(`host:port`, comma-separated).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from hive_harness import metrics
from hivewire import config

log = structlog.get_logger("hive_harness.egress")

ANTHROPIC_HOSTS = ("api.anthropic.com", "console.anthropic.com", "platform.claude.com", "claude.ai")
MAX_HEAD = 64 * 1024
HOST_RE = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:.]+\]$")
Dest = tuple[str, int]


def allowlist(env: Mapping[str, str] | None = None) -> set[Dest]:
    e = os.environ if env is None else env
    out: set[Dest] = set()
    base = e.get("ANTHROPIC_BASE_URL", "").strip()
    if base:
        u = urlsplit(base)
        if u.hostname:
            out.add((u.hostname.lower(), u.port or (443 if u.scheme == "https" else 80)))
    else:
        out |= {(h, 443) for h in ANTHROPIC_HOSTS}
    for item in re.split(r"[ ,]+", config.SANDBOX_ALLOW_HOSTS.get(e)):
        dest = parse_dest(item)
        if dest is not None:
            out.add(dest)
    return out


def parse_dest(text: str) -> Dest | None:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not HOST_RE.fullmatch(host) or not 0 < int(port) < 65536:
        return None
    return host.strip("[]").lower(), int(port)


class EgressProxy:
    def __init__(self, path: Path, allow: set[Dest], *, agent: str = "") -> None:
        self.path, self.allow, self.agent = path, allow, agent
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.refused: list[str] = []

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)  # the sandbox's user is the harness's own uid, mapped

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD:
            return await self._refuse(writer, 431, "request head too large", "?")
        line, _, rest = head.partition(b"\r\n")
        parts = line.decode("latin-1").split(" ")
        if len(parts) != 3:
            return await self._refuse(writer, 400, "not a proxy request", "?")
        method, target, version = parts
        if method == "CONNECT":
            dest = parse_dest(target)
            if dest is None or dest not in self.allow:
                return await self._refuse(writer, 403, f"egress to {target} is not allowed", target)
            up_r, up_w = await asyncio.open_connection(*dest)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            return await _pipe(reader, writer, up_r, up_w)
        u = urlsplit(target)
        if u.scheme != "http" or not u.hostname:
            return await self._refuse(writer, 400, f"{target!r} is not an absolute http URL", target)
        dest = (u.hostname.lower(), u.port or 80)
        if dest not in self.allow:
            return await self._refuse(writer, 403, f"egress to {dest[0]}:{dest[1]} is not allowed", target)
        origin = (u.path or "/") + (f"?{u.query}" if u.query else "")
        headers = [h for h in rest.split(b"\r\n") if h and not h.lower().startswith(
            (b"proxy-connection:", b"proxy-authorization:", b"connection:", b"keep-alive:"))]
        up_r, up_w = await asyncio.open_connection(*dest)
        up_w.write(f"{method} {origin} {version}\r\n".encode("latin-1") + b"\r\n".join(
            [*headers, b"Connection: close"]) + b"\r\n\r\n")
        await _pipe(reader, writer, up_r, up_w)

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, why: str, target: str) -> None:
        metrics.FAILURES.labels("egress_refused").inc()
        log.warning("egress_refused", agent=self.agent, target=target[:200], reason=why)
        self.refused.append(target[:200])
        body = f"hive sandbox: {why}\n".encode()
        writer.write(f"HTTP/1.1 {status} Refused\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        await writer.drain()


async def _pipe(r1: asyncio.StreamReader, w1: asyncio.StreamWriter,
                r2: asyncio.StreamReader, w2: asyncio.StreamWriter) -> None:
    async def one(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                w.write_eof()

    try:
        await asyncio.gather(one(r1, w2), one(r2, w1))
    finally:
        w2.close()
