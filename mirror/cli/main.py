"""The ``mirror`` command: ``serve`` runs the mirror, ``demo`` shows it working offline."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from mirror.cli import logs

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


class LazySubcommands(Mapping[str, Subcommand]):
    """The subcommands by name, each module imported only when it is looked up: a command
    imports what it needs, not every other subcommand's dependencies (start-up time)."""

    def __init__(self, modules: dict[str, str]) -> None:
        self._modules = modules

    def __getitem__(self, name: str) -> Subcommand:
        module: Subcommand = importlib.import_module(self._modules[name])
        return module

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


# In the order ``mirror --help`` lists them (``import`` is a keyword: module ``importer``).
SUBCOMMANDS = LazySubcommands(
    {
        name: f"mirror.cli.{module}"
        for name, module in [
            ("serve", "serve"),
            ("admin", "admin"),
            ("demo", "demo"),
            ("cache", "cache"),
            ("keys", "keys"),
            ("retention", "retention"),
            ("check", "check"),
            ("prewarm", "prewarm"),
            ("export", "export"),
            ("import", "importer"),
            ("bench", "bench"),
            ("db", "db"),
            ("tier", "tier"),
            ("healthcheck", "healthcheck"),
        ]
    }
)
# Options of the top-level parser that take a value (the word after them is not a command).
_VALUED = ("--log-level", "--log-format")


def version() -> str:
    """The installed version of the mirror (``unknown`` when run from a bare source tree)."""
    # Imported here: reading the package metadata costs start-up time no other flag needs.
    from importlib import metadata

    try:
        return metadata.version("mirror")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Version(argparse.Action):
    """``--version``: the version is looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "show the version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        # To stdout, as argparse's own ``version`` action prints.
        sys.stdout.write(f"mirror {version()}\n")
        parser.exit()


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


def chosen(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not a top-level option or its
    value), or ``None`` when that is not a known subcommand."""
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
    return None


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command-line grammar: every subcommand, or ``only`` that one (what ``main`` parses
    with, so a command imports no other subcommand's modules)."""
    top = argparse.ArgumentParser(prog="mirror", description=DESCRIPTION)
    top.add_argument("--version", action=_Version)
    _add_logging_flags(top, top=True)
    commands = top.add_subparsers(dest="command", required=True)
    for name in [only] if only else SUBCOMMANDS:
        SUBCOMMANDS[name].add(commands)
    for sub in _every_subparser(top):
        _add_logging_flags(sub, top=False)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mirror`` console script; returns the exit status."""
    words = sys.argv[1:] if argv is None else argv
    args = parser(chosen(words)).parse_args(words)
    logs.configure(args.log_level, args.log_format)
    return SUBCOMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
