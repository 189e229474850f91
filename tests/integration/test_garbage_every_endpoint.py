"""Garbage bytes to every endpoint of every service: a structured error, and the service keeps answering.

The endpoints are discovered through `$SRV.INFO`, so a new endpoint is covered
without touching this test.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hivewire import codec, subjects

from support.procs import ServiceProcess, wait_for

pytestmark = pytest.mark.slow

SHORTS = ("broker", "deployer", "backup", "harness", "dashboard")
GARBAGE = (b"\x00\xff\xfe garbage", b"{\"unterminated", b"[1, 2, 3]", b'{"to": {"nested": [1]}, "ids": "x"}')


@pytest.fixture
def services(hive_home: Path, nats_url: str, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    from hivewire.procs import free_port

    env = {
        "HIVE_HOME": str(hive_home),
        "HIVE_NATS_URL": nats_url,
        "HIVE_METRICS_ADDR": "127.0.0.1:0",
        "HIVE_AGENT": "garbage-test",
        "HIVE_DASHBOARD_ADDR": f"127.0.0.1:{free_port()}",
        "HIVE_DEPLOYER_ENSURE_MANAGER": "0",
        "HIVE_OPERATOR_TOKEN": "test-token",
    }
    procs = [ServiceProcess(s, env, tmp_path / "logs").start() for s in SHORTS]
    yield procs
    for p in procs:
        p.stop()


async def _gather(nc: Any, subject: str, wait: float = 0.4) -> list[dict[str, Any]]:
    inbox = nc.new_inbox()
    out: list[dict[str, Any]] = []

    async def on(msg: Any) -> None:
        out.append(json.loads(msg.data))

    sub = await nc.subscribe(inbox, cb=on)
    await nc.publish(subject, b"", reply=inbox)
    await asyncio.sleep(wait)
    await sub.unsubscribe()
    return out


def _concrete(subject: str) -> str:
    return ".".join("garbage-test" if t == "*" else ("x" if t == ">" else t) for t in subject.split("."))


async def test_every_endpoint_survives_garbage(services: list[ServiceProcess], nats_transport: Any) -> None:
    nc = nats_transport.nc
    our_pids = {str(p.pid) for p in services}

    async def infos() -> list[dict[str, Any]]:
        # a harness answers only its own discovery subject (the deployer relays the broadcasts to the
        # harnesses it runs; this one runs on its own)
        got = [*await _gather(nc, "$SRV.INFO"), *await _gather(nc, subjects.harness_srv("INFO", "garbage-test"))]
        found = [i for i in got if i.get("metadata", {}).get("pid") in our_pids]
        return found if len({i["name"] for i in found}) == len(SHORTS) else []

    found = await wait_for(infos, timeout=30, interval=0.3)
    endpoints = [(i["name"], e["subject"]) for i in found for e in i.get("endpoints") or []]
    print(f"{len(endpoints)} endpoints: {sorted({n for n, _ in endpoints})}")
    assert len(endpoints) >= len(SHORTS)
    for name, subject in endpoints:
        for garbage in GARBAGE:
            try:
                msg = await nc.request(_concrete(subject), garbage, timeout=5)
            except Exception as exc:  # a timeout here means the service dropped the request
                raise AssertionError(f"{name} {subject}: no reply to garbage ({exc!r})") from None
            headers = dict(msg.headers or {})
            body = json.loads(msg.data) if msg.data else {}
            if codec.ERROR_CODE_HEADER not in headers:
                # Endpoints whose request has only optional fields may accept some junk
                # as `{}`; non-JSON bytes must always be refused.
                assert not garbage.startswith((b"\x00", b'{"unterminated')), f"{name} {subject} accepted {garbage!r}"
                continue
            assert "error" in body and {"code", "message"} <= set(body["error"]), (name, subject, body)
            assert body["error"]["code"] != "internal", (name, subject, body)
    # and every service still answers
    assert len(await infos()) >= len(SHORTS)
    for p in services:
        assert p.proc is not None and p.proc.poll() is None, f"{p.short} died:\n{p.log()[-2000:]}"
    assert os.environ.get("HIVE_HOME")
