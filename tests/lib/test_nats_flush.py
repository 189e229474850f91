"""`hivewire.nats_transport.flush` is a barrier: the server reads its PING after every command
issued before it, so a subscription is in place before its PONG returns. (nats-py's own
`Client.flush` writes the PING ahead of the SUBs and PUBs still in its write buffer.)"""

from __future__ import annotations

import asyncio

import nats

from hivewire.nats_transport import NatsTransport, flush

INFO = b'INFO {"server_id":"fake","version":"2.10.0","proto":1,"max_payload":1048576,"headers":true}\r\n'


async def test_the_ping_follows_the_commands_issued_before_it() -> None:
    """A fake server records the protocol lines in the order it reads them."""
    lines: list[bytes] = []
    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(INFO)
        try:
            while line := await reader.readline():
                lines.append(line.split(b" ")[0].strip())
                if line.startswith(b"PING"):
                    writer.write(b"PONG\r\n")
                    await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
            served.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
    try:
        assert lines == [b"CONNECT", b"PING"]  # the handshake
        for subject in ("a", "b", "c"):
            await nc.subscribe(subject)
        await flush(nc)
        await nc.publish("d", b"")
        await NatsTransport(nc).flush()
        assert lines[2:] == [b"SUB", b"SUB", b"SUB", b"PING", b"PUB", b"", b"PING"]  # (b"": PUB's payload line)
    finally:
        await nc.close()
        await asyncio.wait_for(served.wait(), 5)  # the connection's handler is done before the loop ends
        server.close()
        await server.wait_closed()
