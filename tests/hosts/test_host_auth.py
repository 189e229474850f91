"""Issue 26: an agent host's NATS identity against a real nats-server, one-time join tokens,
and placement (fast; the three-host run is test_many_hosts.py)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import nats
import pytest

from hive_deployer.placement import choose
from hivewire import hostauth, natsauth
from hivewire.errors import HiveError
from hivewire.nats_transport import flush
from hivewire.natsd import NatsServer
from hivewire.wire.hosts import HostInfo
from tests.support.procs import wait_for


async def _true(v: bool) -> bool:
    return v


async def _connect(server: NatsServer, creds_text: str) -> nats.NATS:
    c = natsauth.parse_env_file(creds_text)
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    nc = await nats.connect(server.url, user=c["HIVE_NATS_USER"], password=c["HIVE_NATS_PASSWORD"],
                            inbox_prefix=c["HIVE_NATS_INBOX_PREFIX"], error_cb=on_error, allow_reconnect=False)
    nc._hive_errors = errors  # type: ignore[attr-defined]
    return nc


async def _can_log_in(server: NatsServer, creds_text: str) -> bool:
    """One handshake (CONNECT, PING): a PONG means the server's current config has this user."""
    c = natsauth.parse_env_file(creds_text)
    connect = json.dumps({"user": c["HIVE_NATS_USER"], "pass": c["HIVE_NATS_PASSWORD"], "verbose": False})
    with socket.create_connection((server.host, server.port), timeout=2) as s:
        s.recv(4096)  # INFO
        s.sendall(f"CONNECT {connect}\r\nPING\r\n".encode())
        return s.recv(4096).startswith(b"PONG")


async def test_a_host_may_only_use_its_own_subjects_and_is_cut_off_when_removed(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    natsauth.generate(home, agents=("bob",))
    h2 = hostauth.issue_host(home, "h2")
    assert hostauth.issue_host(home, "h2") == h2  # idempotent: the password is kept
    server = NatsServer(tmp_path / "nats", config=natsauth.config_path(home)).start()
    conns: list[nats.NATS] = []
    try:
        op = await _connect(server, natsauth.creds_path(home, "operator").read_text())
        conns.append(op)
        seen: list[str] = []

        async def rec(m: object) -> None:
            seen.append(m.subject)  # type: ignore[attr-defined]

        await op.subscribe("hive.>", cb=rec)
        host = await _connect(server, h2)
        conns.append(host)
        for subject in ("hive.host.h2.up.heartbeat", "hive.host.h3.up.heartbeat", "hive.broker.bob.send",
                        "hive.agent.bob.presence", "hive.host.h2.start", "hive.operator.approvals.list"):
            await host.publish(subject, b"{}")
        await host.publish("hive.host.h2.up.heartbeat", b"{}")  # barrier: published after all of them
        await flush(host)
        await wait_for(lambda: _true(len(seen) >= 2), timeout=5)
        # not another host's, not an agent's, not a start: only its own heartbeats
        assert seen == ["hive.host.h2.up.heartbeat"] * 2
        got: list[str] = []

        async def listen(m: object) -> None:
            got.append(m.subject)  # type: ignore[attr-defined]

        await host.subscribe("hive.host.h3.>", cb=listen)  # another host's requests
        await host.subscribe("hive.agent.bob.>", cb=listen)  # an agent's wakes and ctl
        await host.subscribe("hive.host.h2.start", cb=listen)  # its own: the barrier below
        await flush(host)  # (not host.flush(): nats-py's PING overtakes the SUBs still buffered)
        await op.publish("hive.host.h3.start", b"{}")
        await op.publish("hive.agent.bob.wake", b"{}")
        await op.publish("hive.host.h2.start", b"{}")  # after the two above, on the same connection
        await flush(op)
        await wait_for(lambda: _true(bool(got)), timeout=5)
        assert got == ["hive.host.h2.start"]
        assert sum("permissions violation" in str(e).lower() for e in host._hive_errors) >= 2  # type: ignore

        # the deployer's requests to it are answered even right after a reload (agent issued)
        async def serve(m: object) -> None:
            await m.respond(b"{}")  # type: ignore[attr-defined]

        host2 = await _connect(server, h2)
        conns.append(host2)
        await host2.subscribe("hive.host.h2.start", cb=serve)
        await flush(host2)
        deployer = await _connect(server, natsauth.creds_path(home, "svc_deployer").read_text())
        conns.append(deployer)
        natsauth.issue_agent(home, "carol")
        await wait_for(lambda: _can_log_in(server, natsauth.creds_path(home, "agent_carol").read_text()))
        assert (await deployer.request("hive.host.h2.start", b"{}", timeout=2)).data == b"{}"

        assert hostauth.revoke_host(home, "h2")
        for _ in range(50):
            if host.is_closed and host2.is_closed:
                break
            await asyncio.sleep(0.1)
        assert host.is_closed and host2.is_closed  # the reload cut both connections at once
        assert "host_h2" not in natsauth.users(home)
    finally:
        for nc in conns:
            if not nc.is_closed:
                await nc.close()
        server.stop()


def test_join_tokens_are_single_use_expiring_and_stored_hashed() -> None:
    token = hostauth.new_token()
    rec = {"token_hash": hostauth.token_hash(token), "token_expires_at": 2000.0, "token_used": False}
    assert token not in str(rec) and len(token) >= 40
    assert hostauth.check_token(rec, token, now=1000.0) is None
    assert hostauth.check_token(rec, token + "x", now=1000.0) == "unknown token"
    assert hostauth.check_token(rec, token, now=2001.0) == "token expired"
    assert hostauth.check_token({**rec, "token_used": True}, token, now=1000.0) == "token already used"
    assert hostauth.check_token({"token_hash": None}, token) == "unknown token"


def _h(name: str, free_gib: float, agents: int = 0, limit: int = 0, state: str = "online") -> HostInfo:
    return HostInfo(name=name, state=state, mem_available=int(free_gib * 2**30),
                    agents=[f"a{i}" for i in range(agents)], agent_limit=limit)


def test_placement_prefers_free_memory_within_limits_and_checks_an_asked_host() -> None:
    hosts = [_h("core", 2), _h("h2", 8, agents=3), _h("h3", 16, agents=2, limit=2), _h("h4", 32, state="lost")]
    assert choose(hosts) == "h2"  # h3 is full, h4 is lost
    assert choose(hosts, "core") == "core"
    for asked, code in (("h3", "conflict"), ("h4", "unavailable"), ("nope", "not_found")):
        with pytest.raises(HiveError) as err:
            choose(hosts, asked)
        assert err.value.code == code
    with pytest.raises(HiveError):
        choose([_h("core", 1, agents=1, limit=1)])
