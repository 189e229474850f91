"""`python -m hivewire.cli` is the `hive` command."""

from hivewire.cli import main

main()
