"""`python -m hivewire.contract [--write|--check] [--root DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hivewire.contract import stale, write


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hivewire.contract", description=__doc__)
    ap.add_argument("--write", action="store_true", help="rewrite docs/asyncapi.yaml and docs/wire.md")
    ap.add_argument("--check", action="store_true", help="exit 1 when they are out of date (the default)")
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: the current directory)")
    args = ap.parse_args(argv)
    if args.write:
        for rel in write(args.root):
            print(f"wrote {rel}")
        return 0
    out = stale(args.root)
    for rel in out:
        print(f"{rel} is out of date: run python -m hivewire.contract --write", file=sys.stderr)
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
