"""`hive-agenthost` / `python -m hive_agenthost`: run this host's agents (after `hive host join`)."""

import os

from hive_agenthost.join import load_host
from hivewire import config
from hivewire.runner import run_service
from hivewire.settings import Settings


def main() -> None:
    # What `hive host join` wrote: the hive's NATS URL and this host's identity (env wins).
    host = load_host(Settings.from_env().home)
    os.environ.setdefault("HIVE_NATS_URL", host.nats_url)
    os.environ.setdefault("HIVE_NATS_CREDS", host.creds_file)
    if host.nats_ca:  # NATS over TLS is checked against the core's CA (its harnesses inherit it)
        os.environ.setdefault("HIVE_NATS_CA", host.nats_ca)
    bind = config.HOST_METRICS_BIND.get()
    if bind:  # its own /metrics where the core's Prometheus reaches it, like its harnesses'
        os.environ.setdefault("HIVE_METRICS_ADDR", f"[{bind}]:0" if ":" in bind else f"{bind}:0")
    from hive_agenthost.service import build

    run_service("agenthost", build)


if __name__ == "__main__":
    main()
