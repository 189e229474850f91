"""`hive up --nats-listen ADDR` (issue 26): the core host's embedded nats-server reachable from
other hosts (network namespaces, as test_many_hosts).

`hive up --only broker` in h1 without the option: from h2, `hive status` against h1's address
gets no connection (127.0.0.1 only), and there is no TLS (no certificate is made; local clients
talk plain text). With `--nats-listen 0.0.0.0:<port>`: TLS is on; from h2 a client that does not
trust the core's CA is refused, one given it (HIVE_NATS_CA, as `hive host join` stores it) gets the
broker's answer with the operator's credentials (auth stays on: an unknown user is refused), the
core's own services and CLI on 127.0.0.1 still work, and `hive up` says where it listens.
`parse_listen` refuses what is not HOST[:PORT].
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from hivewire import natsauth
from hivewire.cli.up import parse_listen
from hivewire.procs import stop_process
from tests.hosts.netns import HUB_ADDR, Lan, available
from tests.hosts.test_many_hosts import HIVE, subprocess_rc

pytestmark = [pytest.mark.skipif(available() is not None, reason=str(available()))]
PORT = 14222


@pytest.fixture
def lan(tmp_path: Path) -> Any:
    net = Lan(f"hive26l-{os.getpid()}", tmp_path / "logs").up()
    try:
        yield net
    finally:
        net.down()


def env(home: Path, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HIVE_", "ANTHROPIC_", "CLAUDE_"))}
    return {**e, "HIVE_HOME": str(home), "HIVE_METRICS_ADDR": "127.0.0.1:0", "HIVE_LOG_LEVEL": "info", **extra}


def test_parse_listen() -> None:
    assert parse_listen("", 4222) == ("127.0.0.1", 4222, "127.0.0.1")
    assert parse_listen("0.0.0.0:4333", 4222) == ("0.0.0.0", 4333, "127.0.0.1")
    assert parse_listen("10.1.2.3", 4222) == ("10.1.2.3", 4222, "10.1.2.3")
    assert parse_listen("[::]:4000", 4222) == ("::", 4000, "127.0.0.1")
    for bad in (":4222", "a b:1", "host:port", "x/y"):
        with pytest.raises(ValueError):
            parse_listen(bad, 4222)


def test_nats_listen_makes_the_core_reachable_from_another_host(lan: Lan, tmp_path: Path) -> None:
    home = tmp_path / "core"
    remote = {"HIVE_NATS_URL": f"nats://{HUB_ADDR['h2']}:{PORT}"}

    def status_from_h2(creds: str, **extra: str) -> tuple[int, Any]:
        e = env(tmp_path / "h2home", **remote, HIVE_NATS_CREDS=creds, **extra)
        try:
            return 0, json.loads(lan.run("h2", [HIVE, "status", "--json", "--wait", "1"], e, timeout=30))
        except AssertionError as exc:
            return 1, str(exc)

    def up(*extra: str) -> Any:
        p = lan.popen("h1", [HIVE, "up", "--only", "broker", "--nats-port", str(PORT), *extra], env(home), "up")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the broker answers locally
            if subprocess_rc(lan, "h1", [HIVE, "status"], env(home)) == 0 and "hive-broker" in lan.run(
                    "h1", [HIVE, "status"], env(home)):
                return p
            time.sleep(0.5)
        raise AssertionError("hive up's broker never answered")

    # --- without the option: loopback only ------------------------------------------------------------------
    p = up()
    op = str(natsauth.creds_path(home, natsauth.OPERATOR_USER))
    rc, out = status_from_h2(op)
    assert rc != 0 and "cannot reach NATS" in out, out
    assert not (home / "tls").exists()  # loopback only: plain text, no certificate
    stop_process(p, timeout=15.0)

    # --- with it: h2 reaches the core's NATS; auth is still on -------------------------------------------------
    p = up("--nats-listen", f"0.0.0.0:{PORT}")  # up() waited for the broker over TLS on 127.0.0.1
    rc, out = status_from_h2(op)  # the system's roots only: the core's certificate does not verify
    assert rc != 0 and "CERTIFICATE_VERIFY_FAILED" in out, out
    ca = {"HIVE_NATS_CA": str(home / "tls" / "ca.pem")}
    rc, out = status_from_h2(op, **ca)
    assert rc == 0, out
    assert "hive-broker" in {s["name"] for s in out}
    bogus = tmp_path / "bogus.env"
    bogus.write_text("HIVE_NATS_USER=nobody\nHIVE_NATS_PASSWORD=wrong\n")
    rc, out = status_from_h2(str(bogus), **ca)
    assert rc != 0, out
    log = (tmp_path / "logs/up.log").read_text()
    assert f"nats listens on 0.0.0.0:{PORT}" in log and "nats TLS: on" in log
    stop_process(p, timeout=15.0)
