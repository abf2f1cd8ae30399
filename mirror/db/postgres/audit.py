"""The tier's retention audit log in PostgreSQL (migration 0007): one row per event, written
by whichever replica acted, read whole by any replica."""

from __future__ import annotations

import json
from typing import Any

from mirror.db.postgres.shared import SharedDatabase

_APPEND = "INSERT INTO audit_events (at, replica, body) VALUES ($1, $2, $3::jsonb)"
_READ = "SELECT replica, body::text FROM audit_events ORDER BY at, id"


class PostgresAudit:
    """Audit events shared by the replicas; ``replica`` names this one in each row."""

    def __init__(self, database: SharedDatabase, replica: str) -> None:
        self._db = database
        self.replica = replica

    def append(self, event: dict[str, Any]) -> None:
        """Record one event (its ``ts`` orders the log); raises ``MetadataUnavailable``."""
        self._db.run("execute", _APPEND, float(event["ts"]), self.replica, json.dumps(event))

    def read(self) -> list[dict[str, Any]]:
        """Every replica's events, oldest first, each with the ``replica`` that wrote it."""
        rows = self._db.run("fetch", _READ)
        return [{**json.loads(body), "replica": replica} for replica, body in rows]

    def close(self) -> None:
        """Close the connection pool."""
        self._db.close()
