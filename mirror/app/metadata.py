"""Wiring of the metadata store from the configuration: the embedded diskcache one (the
single-node default) or the PostgreSQL one a regional tier shares.

Used by the app and by the maintenance commands (``mirror retention``, ``mirror db``), so
they all open the metadata the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mirror.config import Config, ConfigError
from mirror.db.metadata import Metadata
from mirror.db.postgres.audit import PostgresAudit
from mirror.db.postgres.connect import PostgresSettings
from mirror.db.postgres.metadata import PostgresMetadata
from mirror.db.postgres.retention import PostgresRetention
from mirror.db.postgres.shared import SharedDatabase
from mirror.db.postgres.uploads import PostgresUploadSessions
from mirror.db.retention import RetentionStore
from mirror.db.roles import MetadataStore


def postgres_settings(config: Config, environ: Mapping[str, str]) -> PostgresSettings:
    """The ``[metadata]`` connection settings, the password read from its variable or file
    (``ConfigError`` naming the key when it cannot be read)."""
    meta = config.metadata
    password: str | None = None
    if meta.password_env:
        if meta.password_env not in environ:
            raise ConfigError(f"metadata.password_env: {meta.password_env} is not set")
        password = environ[meta.password_env]
    elif meta.password_file:
        try:
            lines = Path(meta.password_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"metadata.password_file: cannot read: {exc.strerror}") from None
        password = lines[0] if lines else ""
    return PostgresSettings(
        meta.dsn, password, pool_size=meta.pool_size, call_timeout=meta.call_timeout
    )


def open_metadata(
    config: Config,
    data_dir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    migrate_schema: bool = True,
) -> MetadataStore:
    """The configured metadata store, open (PostgreSQL: connected, schema migrated unless
    told not to; ``MetadataUnavailable`` when the database cannot be used)."""
    if config.metadata.backend == "postgres":
        settings = postgres_settings(config, os.environ if environ is None else environ)
        return PostgresMetadata.open(settings, data_dir, migrate_schema=migrate_schema)
    return Metadata(data_dir / "metadata")


def open_retention_state(
    config: Config, directory: Path, environ: Mapping[str, str] | None = None
) -> RetentionStore:
    """The retention state in ``directory``; with ``[metadata] backend = "postgres"`` its
    policies, unreferenced hosted links and run lock are the tier's (the deferred blobs stay
    this replica's)."""
    if config.metadata.backend != "postgres":
        return RetentionStore(directory)
    settings = postgres_settings(config, os.environ if environ is None else environ)
    database = SharedDatabase.open(settings, "retention")
    try:
        return RetentionStore(directory, shared=PostgresRetention(database))
    except BaseException:
        database.close()
        raise


def open_shared_audit(
    config: Config, environ: Mapping[str, str] | None = None
) -> PostgresAudit | None:
    """With ``[metadata] backend = "postgres"`` the tier's audit log, rows naming this replica
    by ``tier.self`` (else ``server.listen``); otherwise ``None`` (the file alone)."""
    if config.metadata.backend != "postgres":
        return None
    settings = postgres_settings(config, os.environ if environ is None else environ)
    database = SharedDatabase.open(settings, "audit")
    return PostgresAudit(database, config.tier.self or config.server.listen)


def upload_owners_of(
    config: Config, environ: Mapping[str, str] | None = None
) -> PostgresUploadSessions | None:
    """With ``[metadata] backend = "postgres"`` the tier's table of upload sessions (which
    replica holds each); otherwise ``None`` (a session is this replica's alone)."""
    if config.metadata.backend != "postgres":
        return None
    settings = postgres_settings(config, os.environ if environ is None else environ)
    return PostgresUploadSessions(SharedDatabase.open(settings, "uploads"))
