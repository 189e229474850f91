"""`hive-deployer` / `python -m hive_deployer`: run the deployer service on its own."""

from hive_deployer.service import build
from hivewire.runner import run_service


def main() -> None:
    run_service("deployer", build)


if __name__ == "__main__":
    main()
