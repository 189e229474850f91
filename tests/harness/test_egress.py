"""The sandbox's egress proxy: only allowlisted destinations, CONNECT tunnels and absolute-form HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hive_harness import egress


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback server that records what it got and answers like an HTTP origin."""
    got: list[bytes] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got.append(await r.readuntil(b"\r\n\r\n"))
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        await w.drain()
        w.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1], got
    srv.close()
    await srv.wait_closed()


async def _ask(path: Path, request: bytes) -> bytes:
    r, w = await asyncio.open_unix_connection(str(path))
    w.write(request)
    await w.drain()
    out = await asyncio.wait_for(r.read(), 10)
    w.close()
    return out


async def test_only_the_allowlist_gets_out(tmp_path: Path, upstream: tuple[int, list[bytes]]) -> None:
    port, got = upstream
    proxy = egress.EgressProxy(tmp_path / "e.sock", {("127.0.0.1", port)}, agent="alice")
    await proxy.start()
    try:
        # plain HTTP in absolute form: sent on in origin form, Connection: close, no proxy headers
        out = await _ask(proxy.path, f"POST http://127.0.0.1:{port}/v1/messages?beta=true HTTP/1.1\r\n"
                                     "Host: x\r\nProxy-Connection: Keep-Alive\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello")
        assert got[-1].startswith(b"POST /v1/messages?beta=true HTTP/1.1\r\n")
        assert b"Proxy-Connection" not in got[-1] and b"Connection: close" in got[-1]
        # a CONNECT tunnel to the allowed destination carries bytes both ways
        r, w = await asyncio.open_unix_connection(str(proxy.path))
        w.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        assert (await r.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(r.read(), 10)).endswith(b"hello")
        w.close()
        # anything else: refused with a reason, and counted
        for req in (f"CONNECT 127.0.0.1:{port + 1} HTTP/1.1\r\n\r\n", "CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n",
                    f"GET http://localhost:{port}/ HTTP/1.1\r\n\r\n"):
            out = await _ask(proxy.path, req.encode())
            assert out.startswith(b"HTTP/1.1 403") and b"not allowed" in out, out
        assert (await _ask(proxy.path, b"GET /relative HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await _ask(proxy.path, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert len(proxy.refused) == 5
    finally:
        await proxy.close()


def test_the_allowlist_is_the_model_endpoint_plus_what_the_operator_adds() -> None:
    assert egress.allowlist({"ANTHROPIC_BASE_URL": "http://127.0.0.1:8123"}) == {("127.0.0.1", 8123)}
    assert egress.allowlist({"ANTHROPIC_BASE_URL": "https://proxy.corp.example/anthropic",
                             "HIVE_SANDBOX_ALLOW_HOSTS": "github.com:443, pypi.org:443,bad,x:99999"}) == {
        ("proxy.corp.example", 443), ("github.com", 443), ("pypi.org", 443)}
    assert ("api.anthropic.com", 443) in egress.allowlist({})
