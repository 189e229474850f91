"""Run one service as its own process: logging, /metrics, NATS, signals.

Every `hive-<service>` entry point (and `python -m hive_<service>`) is
`run_service("<short>", build)`, so systemd, compose, nix and `hive up` all
start services the same way.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import structlog

from hivewire import config
from hivewire.config import ConfigError
from hivewire.logs import configure_logging
from hivewire.metrics import BUILD_INFO, UP_SINCE, serve_metrics
from hivewire.nats_transport import NatsTransport
from hivewire.service import MicroService
from hivewire.settings import Settings, secure_home
from hivewire.transport import Transport

log = structlog.get_logger("hivewire.runner")

Builder = Callable[[Transport, Settings, str], Awaitable[MicroService]]


def resolve_nats_url(settings: Settings) -> str:
    """`HIVE_NATS_URL`, else the URL `hive up` wrote for its embedded server."""
    if settings.nats_url:
        return settings.nats_url
    url_file = settings.run_dir / "nats.url"
    if url_file.exists():
        return url_file.read_text().strip()
    return settings.nats_servers


def start_metrics(settings: Settings, short: str) -> tuple[str, object]:
    host, port = settings.metrics_bind(short)
    try:
        h, p, server = serve_metrics(host, port)
    except OSError as exc:  # default port taken (a second stack on this host): use any
        log.warning("metrics_port_busy", port=port, error=str(exc))
        h, p, server = serve_metrics(host, 0)
    return f"http://{h}:{p}/metrics", server


async def serve(short: str, build: Builder, settings: Settings, stop: asyncio.Event | None = None) -> None:
    name = f"hive-{short}"
    metrics_url, server = start_metrics(settings, short)
    transport = await NatsTransport.connect(resolve_nats_url(settings), name=name)
    svc = await build(transport, settings, metrics_url)
    await svc.start()
    # Everything built at startup (modules, the service, its stores) lives as long as
    # the process: keep it out of the cyclic GC's full passes, which otherwise scan it
    # again every ~70k allocations (about 9% of the broker's CPU under a send burst).
    gc.freeze()
    BUILD_INFO.labels(name, svc.version).set(1)
    UP_SINCE.labels(name).set(time.time())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("ready", service=name, metrics_url=metrics_url)
    await stop.wait()
    log.info("stopping", service=name)
    try:
        await asyncio.wait_for(svc.stop(), 8.0)
    except TimeoutError:
        log.warning("stop_timeout", service=name)
    await transport.close()
    server.shutdown()  # type: ignore[attr-defined]
    server.server_close()  # type: ignore[attr-defined]  # shutdown() alone leaves the socket open


def run_service(short: str, build: Builder) -> None:
    """A `HIVE_*` variable with a value it does not accept (hivewire.config) stops the
    process here, exit status 2, with one line naming it and what it accepts."""
    config.check_or_exit(short)
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level, service=f"hive-{short}")
        secure_home(settings.home)  # umask 077, HIVE_HOME 0700: nothing it writes is world-readable
        asyncio.run(serve(short, build, settings))
    except ConfigError as exc:  # a variable declared for another service, read by this one
        print(f"hive-{short}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
