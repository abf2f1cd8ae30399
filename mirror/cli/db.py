"""``mirror db migrate``: apply the shared metadata database's pending schema migrations
(``[metadata] backend = "postgres"``); a replica also applies them at start."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, TextIO

import asyncpg

from mirror.app.metadata import postgres_settings
from mirror.cli.cachedir import add_cache_flags, run_on_cache
from mirror.config import Config
from mirror.db.postgres.migrate import migrate_database, migrations


def add(commands: Any) -> None:
    """Add ``db`` and its actions to the ``mirror`` command's subparsers."""
    db = commands.add_parser("db", help="the shared metadata database (PostgreSQL)")
    actions = db.add_subparsers(dest="action", required=True)
    add_cache_flags(actions.add_parser("migrate", help="apply pending schema migrations"))


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run a ``mirror db`` action: 0 done, 1 the database refused, 2 could not start."""

    def action(config: Config) -> int:
        if config.metadata.backend != "postgres":
            print('mirror: metadata.backend is not "postgres": nothing to migrate', file=err)
            return 2
        settings = postgres_settings(config, os.environ)
        try:
            applied = asyncio.run(migrate_database(settings.dsn, settings.password))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            print(f"mirror: metadata database: {type(exc).__name__}: {exc}", file=err)
            return 1
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}", file=out)
        latest = max((m.version for m in migrations()), default=0)
        print(f"schema at version {latest:04d} ({len(applied)} applied now)", file=out)
        return 0

    return run_on_cache(args, action, err)
