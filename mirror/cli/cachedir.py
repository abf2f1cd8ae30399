"""What the offline cache commands (``mirror cache``, ``mirror keys``) share: the flags that
name the cache and the exit status when it cannot be opened."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from mirror.config import Config

# The configuration and key modules are imported when a cache is opened, not when the flags are
# added: ``mirror export --mirror URL`` opens none, and starts faster without them.


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and ``--data-dir``."""
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--data-dir", help="directory of the cache")


def config_of(args: argparse.Namespace) -> Config:
    """The configuration those flags name; raises ``ConfigError``."""
    from mirror.config import load_config

    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["storage"] = {"data_dir": args.data_dir}
    return load_config(args.config, overrides=overrides)


def run_on_cache(args: argparse.Namespace, command: Callable[[Config], int], err: TextIO) -> int:
    """``command`` on the configured cache; exit status 2 (and the reason on ``err``) when the
    configuration or the keys do not open it."""
    from mirror.config import ConfigError
    from mirror.crypto.keys import KeyringError

    try:
        return command(config_of(args))
    except ConfigError as exc:
        print(f"mirror: configuration error: {exc}", file=err)
    except KeyringError as exc:
        print(f"mirror: key error: {exc}", file=err)
    return 2


def cache_errors() -> tuple[type[Exception], ...]:
    """What opening a cache raises when it cannot be opened: a bad configuration, unusable
    keys, a data directory another process holds."""
    from mirror.config import ConfigError
    from mirror.crypto.keys import KeyringError
    from mirror.db.lock import DataDirLocked

    return ConfigError, KeyringError, DataDirLocked
