"""`hive-dashboard` / `python -m hive_dashboard`: serve the dashboard with uvicorn."""

from __future__ import annotations

import uvicorn

from hive_dashboard.app import create_app
from hive_dashboard.config import DashboardConfig
from hivewire import config
from hivewire.logs import configure_logging
from hivewire.settings import Settings, secure_home


def main() -> None:
    config.check_or_exit("dashboard")  # a bad HIVE_* value: exit 2, naming it
    settings = Settings.from_env()
    configure_logging(settings.log_level, service="hive-dashboard")
    secure_home(settings.home)  # umask 077, HIVE_HOME 0700 (the operator token is created below)
    cfg = DashboardConfig.load(settings)
    host, port = cfg.bind
    uvicorn.run(create_app(config=cfg), host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
