"""The ``mirror`` command: ``serve`` runs the mirror, ``demo`` shows it working offline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from importlib import metadata
from typing import Any, Protocol

from mirror.cli import (
    admin,
    bench,
    cache,
    check,
    demo,
    export,
    healthcheck,
    importer,
    keys,
    logs,
    prewarm,
    retention,
    serve,
)

DESCRIPTION = (
    "A pull-through caching mirror for OCI container images. 'mirror serve' runs it, "
    "'mirror demo' shows it working offline. --log-level and --log-format may come before "
    "or after the subcommand."
)


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
    "check": check,
    "prewarm": prewarm,
    "export": export,
    "import": importer,
    "bench": bench,
    "healthcheck": healthcheck,
}


def version() -> str:
    """The installed version of the mirror (``unknown`` when run from a bare source tree)."""
    try:
        return metadata.version("mirror")
    except metadata.PackageNotFoundError:
        return "unknown"


def _add_logging_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On the subcommands the default is SUPPRESS, so a flag before the subcommand survives.
    parser.add_argument(
        "--log-level",
        type=logs.level_flag,
        default="INFO" if top else argparse.SUPPRESS,
        metavar="LEVEL",
        help=f"{', '.join(logs.LEVELS)} (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text" if top else argparse.SUPPRESS,
        help="text lines, or one JSON object a line (default: text)",
    )


def _every_subparser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _every_subparser(sub)


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(prog="mirror", description=DESCRIPTION)
    top.add_argument("--version", action="version", version=f"mirror {version()}")
    _add_logging_flags(top, top=True)
    commands = top.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        module.add(commands)
    for sub in _every_subparser(top):
        _add_logging_flags(sub, top=False)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mirror`` console script; returns the exit status."""
    args = parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    return SUBCOMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
