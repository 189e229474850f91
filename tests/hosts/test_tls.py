"""TLS between hosts (hivewire.tls), in-process on loopback and fast.

The core's CA and server certificate (files, modes, names, reissue under the same CA); a
real nats-server with the `tls {}` block `hive up` writes beyond loopback refuses a plain-text
client and one that does not trust the core's CA; the real deployer's join endpoint over
HTTPS: a join pinning another CA fingerprint is refused with nothing written (and the token
still unused), the right one stores the CA, and a real hive-agenthost connects with it over
TLS as its own NATS user and heartbeats to the deployer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from hive_agenthost.join import join, load_host
from hive_agenthost.service import AgentHostService

from hive_deployer.lifecycle import Options
from hive_deployer.runtimes import ProcessRuntime
from hive_deployer.service import DeployerService
from hivewire import config, natsauth, tls
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.natsd import NatsServer
from hivewire.procs import free_port
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import ops
from hivewire.wire.hosts import HostAddRequest, HostNameRequest
from tests.support.procs import wait_for


def test_the_core_ca_and_certificate(tmp_path: Path) -> None:
    home = tmp_path / "core"
    cert = tls.ensure(home, {"localhost", "127.0.0.1", "core.lan"})
    d = tls.tls_dir(home)
    assert d.stat().st_mode & 0o777 == 0o700
    for key in ("ca.key", "server.key"):
        assert (d / key).stat().st_mode & 0o777 == 0o600
    assert cert.sha256 == tls.fingerprint(cert.ca.read_bytes())
    assert tls.normalize_fingerprint(":".join(cert.sha256[i:i + 2].upper() for i in range(0, 64, 2))) == cert.sha256
    with pytest.raises(ValueError):
        tls.normalize_fingerprint("abc")

    def names() -> set[str]:
        c = x509.load_pem_x509_certificate(cert.cert.read_bytes())
        return {str(n.value) for n in c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}

    assert {"127.0.0.1", "core.lan"} <= names()
    before = cert.cert.read_bytes()
    assert tls.ensure(home, {"core.lan"}) == cert and cert.cert.read_bytes() == before  # covered: kept
    again = tls.ensure(home, {"10.0.0.7"})  # a new name: reissued, same CA, old names kept
    assert again.sha256 == cert.sha256 and cert.cert.read_bytes() != before
    assert {"127.0.0.1", "core.lan", "10.0.0.7"} <= names()
    (tls.tls_dir(home) / "ca.key").unlink()  # lost: the certificate serves while it covers the names
    assert tls.ensure(home, {"core.lan"}).sha256 == cert.sha256
    with pytest.raises(tls.TlsError, match=r"ca\.key is missing"):
        tls.ensure(home, {"new.name"})
    assert tls.fingerprint(cert.ca.read_bytes()) == cert.sha256  # no new CA behind the hosts' backs
    assert tls.is_loopback("127.0.0.1") and tls.is_loopback("[::1]") and not tls.is_loopback("0.0.0.0")
    assert "10.9.8.7" in tls.core_sans(["10.9.8.7"], {"HIVE_TLS_SANS": "hive.example, 192.0.2.9"})
    assert {"hive.example", "192.0.2.9"} <= tls.core_sans([], {"HIVE_TLS_SANS": "hive.example, 192.0.2.9"})


@pytest.fixture
async def tls_nats(tmp_path: Path) -> AsyncIterator[tuple[Path, NatsServer]]:
    """The core's auth config plus the `tls {}` block, as `hive up --nats-listen` runs it."""
    home = tmp_path / "core"
    natsauth.generate(home, agents=())
    cert = tls.ensure(home, tls.core_sans(["127.0.0.1"], {}))
    server = NatsServer(tmp_path / "nats", config=tls.nats_tls_config(home, cert, natsauth.config_path(home)))
    server.start()
    try:
        yield home, server
    finally:
        server.stop()


async def test_the_tls_listener_refuses_plain_text_and_untrusted_clients(
        tls_nats: tuple[Path, NatsServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, server = tls_nats
    r, w = await asyncio.open_connection(server.host, server.port)
    info = json.loads((await r.readline()).split(b" ", 1)[1])
    assert info["tls_required"] is True
    w.write(b'CONNECT {"verbose":false}\r\nPING\r\n')  # plain text after the INFO
    await w.drain()
    rest = await asyncio.wait_for(r.read(), 15)  # the server closes it
    assert b"PONG" not in rest
    w.close()

    monkeypatch.setenv("HIVE_NATS_CREDS", str(natsauth.creds_path(home, natsauth.OPERATOR_USER)))
    monkeypatch.delenv("HIVE_NATS_CA", raising=False)
    monkeypatch.setenv("HIVE_HOME", str(tmp_path / "elsewhere"))  # no tls/ca.pem: the system's roots only
    with pytest.raises(HiveError) as exc:
        await NatsTransport.connect(server.url, name="untrusting", forever=False)
    assert exc.value.code == "unavailable" and "CERTIFICATE_VERIFY_FAILED" in exc.value.message
    monkeypatch.setenv("HIVE_NATS_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(config.ConfigError, match="HIVE_NATS_CA"):
        await NatsTransport.connect(server.url, name="typo", forever=False)
    monkeypatch.delenv("HIVE_NATS_CA")
    monkeypatch.setenv("HIVE_HOME", str(home))  # the core's own services: HIVE_HOME/tls/ca.pem
    t = await NatsTransport.connect(server.url, name="local", forever=False)
    try:
        assert t.nc._server_info["tls_required"] and t.nc.is_connected
    finally:
        await t.close()


async def test_a_join_pins_the_ca_and_the_agent_host_connects_over_tls(
        tls_nats: tuple[Path, NatsServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, server = tls_nats
    join_port = free_port("127.0.0.1")
    for k, v in {"HIVE_HOME": str(home), "HIVE_DEPLOYER_ENSURE_MANAGER": "0", "HIVE_HOST_NAME": "core",
                 "HIVE_JOIN_ADDR": f"127.0.0.1:{join_port}", "HIVE_HOSTS_NATS_PORT": str(server.port),
                 "HIVE_HOST_HEARTBEAT_S": "0.3", "HIVE_METRICS_ADDR": "127.0.0.1:0"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("HIVE_NATS_CA", raising=False)
    started: list[object] = []
    transports: list[NatsTransport] = []
    monkeypatch.setenv("HIVE_NATS_CREDS", str(natsauth.creds_path(home, natsauth.service_user("deployer"))))
    t_dep = await NatsTransport.connect(server.url, name="hive-deployer", forever=False)
    monkeypatch.setenv("HIVE_NATS_CREDS", str(natsauth.creds_path(home, natsauth.OPERATOR_USER)))
    t_op = await NatsTransport.connect(server.url, name="operator", forever=False)
    transports += [t_dep, t_op]
    settings = Settings(home=home, nats_url=server.url, metrics_addr="127.0.0.1:0")
    svc = DeployerService(t_dep, settings, runtime=ProcessRuntime(allow_unconfined=True),
                          options=Options(stop_timeout=5.0), ensure_manager=False)
    svc.hosts.opts.tls = True  # on loopback it would be plain HTTP
    await svc.start()
    started.append(svc)
    op = HiveClient(t_op)

    async def answers() -> bool:  # its subscriptions are in place before the operator asks
        try:
            await op.request(ops.HOSTS_LIST, HostNameRequest(name=""), timeout=2.0)
            return True
        except HiveError:
            return False

    try:
        assert await wait_for(answers, timeout=15)
        invite = await op.request(ops.HOSTS_ADD, HostAddRequest(name="h2"))
        url = f"https://127.0.0.1:{join_port}"
        assert invite.join_url == url and invite.ca_sha256 == tls.fingerprint(tls.ca_path(home).read_bytes())
        assert invite.command.endswith(f"--ca-sha256 {invite.ca_sha256}")

        h2 = tmp_path / "h2"
        other = tls.fingerprint(tls.ensure(tmp_path / "impostor", {"127.0.0.1"}).ca.read_bytes())
        with pytest.raises(HiveError) as exc:
            await asyncio.to_thread(join, h2, url, "h2", invite.token, 10.0, other)
        assert exc.value.code == "forbidden" and invite.ca_sha256 in exc.value.message
        assert not h2.exists()  # nothing written
        with pytest.raises(HiveError) as exc:  # a plain-HTTP client is not answered
            await asyncio.to_thread(join, h2, f"http://127.0.0.1:{join_port}", "h2", invite.token, 10.0)
        assert not h2.exists()

        cfg = await asyncio.to_thread(join, h2, url, "h2", invite.token, 10.0, invite.ca_sha256.upper())
        assert cfg == load_host(h2) and cfg.nats_ca == str(tls.ca_path(h2))
        assert tls.ca_path(h2).read_bytes() == tls.ca_path(home).read_bytes()
        assert cfg.nats_url == f"nats://127.0.0.1:{server.port}"

        # hive-agenthost as its __main__ sets it up: the stored credentials and CA
        monkeypatch.setenv("HIVE_HOME", str(h2))
        monkeypatch.setenv("HIVE_NATS_CREDS", cfg.creds_file)
        monkeypatch.setenv("HIVE_NATS_CA", cfg.nats_ca)
        t_h2 = await asyncio.wait_for(NatsTransport.connect(cfg.nats_url, name="hive-agenthost", forever=True), 20)
        transports.append(t_h2)
        assert t_h2.nc._server_info["tls_required"]
        host = AgentHostService(t_h2, Settings(home=h2, nats_url=cfg.nats_url, metrics_addr="127.0.0.1:0"),
                                host="h2", runtime=ProcessRuntime(allow_unconfined=True))
        await host.start()
        started.append(host)

        async def heard() -> bool:
            live = svc.hosts.live.get("h2")
            return live is not None and live.hb is not None

        assert await wait_for(heard, timeout=15)
    finally:
        for s in reversed(started):
            await s.stop()  # type: ignore[attr-defined]
        for t in transports:
            await t.close()
