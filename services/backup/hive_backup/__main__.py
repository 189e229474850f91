"""`hive-backup` / `python -m hive_backup`: run the backup service on its own."""

from hive_backup.service import build
from hivewire.runner import run_service


def main() -> None:
    run_service("backup", build)


if __name__ == "__main__":
    main()
