"""What the offline cache commands (``mirror cache``, ``mirror keys``) share: the flags that
name the cache and the exit status when it cannot be opened."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from mirror.config import Config, ConfigError, load_config
from mirror.crypto.keys import KeyringError


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and ``--data-dir``."""
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--data-dir", help="directory of the cache")


def config_of(args: argparse.Namespace) -> Config:
    """The configuration those flags name; raises ``ConfigError``."""
    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["storage"] = {"data_dir": args.data_dir}
    return load_config(args.config, overrides=overrides)


def run_on_cache(args: argparse.Namespace, command: Callable[[Config], int], err: TextIO) -> int:
    """``command`` on the configured cache; exit status 2 (and the reason on ``err``) when the
    configuration or the keys do not open it."""
    try:
        return command(config_of(args))
    except ConfigError as exc:
        print(f"mirror: configuration error: {exc}", file=err)
    except KeyringError as exc:
        print(f"mirror: key error: {exc}", file=err)
    return 2
