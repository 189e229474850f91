"""`hive-broker` / `python -m hive_broker`: run the broker service on its own."""

from hive_broker.service import build
from hivewire.runner import run_service


def main() -> None:
    run_service("broker", build)


if __name__ == "__main__":
    main()
