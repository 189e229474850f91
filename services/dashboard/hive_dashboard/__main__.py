"""`hive-dashboard` / `python -m hive_dashboard`: serve the dashboard with uvicorn."""

from __future__ import annotations

import uvicorn

from hive_dashboard.app import create_app
from hivewire.logs import configure_logging
from hivewire.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level, service="hive-dashboard")
    host, _, port = settings.dashboard_addr.rpartition(":")
    uvicorn.run(create_app(settings), host=host or "127.0.0.1", port=int(port), log_config=None, access_log=False)


if __name__ == "__main__":
    main()
