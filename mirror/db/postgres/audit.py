"""The tier's retention audit log in PostgreSQL (migration 0007): one row per event, written
by whichever replica acted, read whole by any replica."""

from __future__ import annotations

import json
from typing import Any

from mirror.db.postgres.shared import SharedDatabase

_APPEND = "INSERT INTO audit_events (at, replica, body) VALUES ($1, $2, $3::jsonb)"
_READ = "SELECT replica, body::text FROM audit_events ORDER BY at, id"
# One batch of pruning: the oldest ``$2`` rows before ``$1`` (the index on ``at`` finds them).
_PRUNE = (
    "DELETE FROM audit_events WHERE id IN "
    "(SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)"
)
# The advisory lock key of pruning ("audprn"): one replica prunes at a time.
PRUNE_LOCK = 0x61756470726E
# Rows one pruning transaction deletes at most: short, so writers never wait long on it.
PRUNE_BATCH = 5000


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

    def prune(self, before: float, batch: int = PRUNE_BATCH) -> int:
        """Delete every replica's events older than ``before`` (epoch seconds), ``batch``
        rows a transaction; the rows deleted. Each batch takes the pruning lock first: when
        another replica holds it, that one is pruning, and this one stops."""
        total = 0
        while True:
            count = self._db.call(self._prune_batch(before, batch))
            if count is None:
                return total
            total += count
            if count < batch:
                return total

    async def _prune_batch(self, before: float, batch: int) -> int | None:
        async with self._db.pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", PRUNE_LOCK):
                return None
            status = await connection.execute(_PRUNE, before, batch)
            return int(status.rsplit(" ", 1)[1])

    def close(self) -> None:
        """Close the connection pool."""
        self._db.close()
