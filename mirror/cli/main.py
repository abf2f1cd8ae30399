"""The ``mirror`` command: ``serve`` runs the mirror, ``demo`` shows it working offline."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Protocol

from mirror.cli import admin, cache, demo, keys, retention, serve


class Subcommand(Protocol):
    """What every module of ``mirror.cli`` that is a subcommand provides."""

    def add(self, commands: Any) -> None:
        """Add the subcommand, its flags and its own subcommands to ``commands``."""

    def run(self, args: argparse.Namespace) -> int:
        """Carry out the parsed command; returns the exit status."""


# In the order ``mirror --help`` lists them.
SUBCOMMANDS: dict[str, Subcommand] = {
    "serve": serve,
    "admin": admin,
    "demo": demo,
    "cache": cache,
    "keys": keys,
    "retention": retention,
}


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(prog="mirror", description=__doc__)
    top.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = top.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        module.add(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mirror`` console script; returns the exit status."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return SUBCOMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
