"""`hive-harness` / `python -m hive_harness`: run the harness service on its own."""

from hive_harness.service import HarnessService, build
from hivewire import promsd
from hivewire.runner import run_service
from hivewire.settings import Settings
from hivewire.transport import Transport


async def build_announced(transport: Transport, settings: Settings, metrics_url: str) -> HarnessService:
    """The harness, with its /metrics URL announced in its state dir before its first heartbeat
    (the deployer reads it there and lists the agent for Prometheus: hivewire.promsd)."""
    svc = await build(transport, settings, metrics_url)
    if metrics_url:
        promsd.announce(svc.state_dir, svc.instance, metrics_url)
    return svc


def main() -> None:
    run_service("harness", build_announced)


if __name__ == "__main__":
    main()
