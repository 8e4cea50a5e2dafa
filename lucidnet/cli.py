"""The ``lucidnet`` command (placeholder: extended by the CLI module work)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lucidnet")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="train and test a network on scikit-learn's digits data set")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
