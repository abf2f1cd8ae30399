"""Schema migrations of the shared metadata database: versioned, applied once however many
replicas start at once, and by ``mirror db migrate``."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import asyncpg

from mirror.app.metadata import postgres_settings
from mirror.cli import db
from mirror.cli.main import parser
from mirror.config import load_config
from mirror.db.postgres.migrate import migrate_database, migrations
from tests.peers.postgres import PostgresServer


def mirror_db(*argv: str) -> tuple[int, str, str]:
    """``mirror db ARGV``: exit status, standard output and standard error."""
    out, err = io.StringIO(), io.StringIO()
    status = db.run(parser().parse_args(["db", *argv]), out, err)
    return status, out.getvalue(), err.getvalue()


def test_migrations_are_numbered_in_order_from_one() -> None:
    versions = [m.version for m in migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert migrations()[0].name == "metadata"


async def test_replicas_starting_at_once_apply_each_migration_once(postgres_dsn: str) -> None:
    results = await asyncio.gather(*(migrate_database(postgres_dsn, None) for _ in range(4)))
    applied = [m.version for result in results for m in result]
    assert sorted(applied) == [m.version for m in migrations()]
    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows = await connection.fetch("SELECT version FROM mirror_schema ORDER BY version")
    finally:
        await connection.close()
    assert [r[0] for r in rows] == [m.version for m in migrations()]
    assert await migrate_database(postgres_dsn, None) == ()


def test_mirror_db_migrate_applies_then_reports_nothing_pending(
    postgres_dsn: str, tmp_path: Path
) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(f'[metadata]\nbackend = "postgres"\ndsn = "{postgres_dsn}"\n')
    status, out, _ = mirror_db("migrate", "--config", str(config))
    assert status == 0
    assert "applied 0001_metadata" in out
    assert "applied 0002_notify" in out
    assert "applied 0003_deletions" in out
    assert "applied 0004_identity" in out
    assert "applied 0005_retention" in out
    assert "applied 0006_quotas" in out
    assert "applied 0007_audit" in out
    assert "applied 0008_upload_sessions" in out
    status, out, _ = mirror_db("migrate", "--config", str(config))
    latest = f"{migrations()[-1].version:04d}"
    assert (status, out.splitlines()) == (0, [f"schema at version {latest} (0 applied now)"])


def test_mirror_db_migrate_on_the_embedded_store_says_so(tmp_path: Path) -> None:
    status, _, err = mirror_db("migrate", "--data-dir", str(tmp_path))
    assert status == 2
    assert 'metadata.backend is not "postgres"' in err


def test_an_unreachable_database_fails_with_its_reason(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    config = tmp_path / "mirror.toml"
    dsn = postgres_server.dsn("no_such_database")
    config.write_text(f'[metadata]\nbackend = "postgres"\ndsn = "{dsn}"\n')
    status, _, err = mirror_db("migrate", "--config", str(config))
    assert status == 1
    assert "InvalidCatalogNameError" in err


def test_a_dsn_carrying_a_password_is_refused_and_settings_never_print_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text('[metadata]\nbackend = "postgres"\ndsn = "postgresql://u:hunter2@db/m"\n')
    status, _, err = mirror_db("migrate", "--config", str(config))
    assert status == 2
    assert "metadata.dsn: must not carry a password" in err
    assert "hunter2" not in err
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    config.write_text(
        f'[metadata]\nbackend = "postgres"\ndsn = "postgresql://u@db/m"\n'
        f'password_file = "{secret}"\n'
    )
    settings = postgres_settings(load_config(config), {})
    assert settings.password == "hunter2"
    assert "hunter2" not in repr(settings)
