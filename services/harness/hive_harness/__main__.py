"""`hive-harness` / `python -m hive_harness`: run the harness service on its own."""

from hive_harness.service import build
from hivewire.runner import run_service


def main() -> None:
    run_service("harness", build)


if __name__ == "__main__":
    main()
