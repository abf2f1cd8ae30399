"""Versioned schema migrations, applied once however many replicas start at once.

``migrations/NNNN_name.sql`` are applied in order, each in its own transaction, and recorded in
``mirror_schema``; the whole pass holds a PostgreSQL advisory lock, so a second replica
starting at the same moment waits and then finds nothing left to apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

# The advisory lock key of the migration pass (any constant the mirror alone uses).
MIGRATION_LOCK = 0x6D6972726F72  # "mirror"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema step: its version, name and SQL."""

    version: int
    name: str
    sql: str


def migrations() -> tuple[Migration, ...]:
    """The shipped migrations, oldest first."""
    found = []
    for entry in resources.files("mirror.db.postgres").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return tuple(sorted(found, key=lambda m: m.version))


async def applied(connection: asyncpg.Connection) -> set[int]:
    """The versions recorded as applied (none on an empty database)."""
    exists = await connection.fetchval("SELECT to_regclass('mirror_schema') IS NOT NULL")
    if not exists:
        return set()
    return {row[0] for row in await connection.fetch("SELECT version FROM mirror_schema")}


async def migrate(connection: asyncpg.Connection) -> tuple[Migration, ...]:
    """Apply every migration not yet applied, under the advisory lock; returns those applied."""
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS mirror_schema (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = await applied(connection)
        todo = tuple(m for m in migrations() if m.version not in done)
        for migration in todo:
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO mirror_schema (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        return todo
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def migrate_database(dsn: str, password: str | None) -> tuple[Migration, ...]:
    """Connect, apply what is pending (as :func:`migrate`), disconnect; those applied."""
    connection = await asyncpg.connect(dsn=dsn, password=password)
    try:
        return await migrate(connection)
    finally:
        await connection.close()
