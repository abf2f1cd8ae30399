"""Where each chunked upload session of a tier lives (migration 0008): the replica holding
its staged bytes, so any replica can send the session's requests there."""

from __future__ import annotations

from dataclasses import dataclass

from mirror.db.postgres.shared import SharedDatabase

# Seconds a row is kept at most (a session expires long before; its row is then dead weight).
KEPT = 7 * 24 * 3600.0

_CLAIM = (
    "INSERT INTO upload_sessions VALUES ($1, $2, $3, $4, extract(epoch FROM now()))"
    " ON CONFLICT (uuid) DO UPDATE SET replica = EXCLUDED.replica"
)
# The server's clock stamps and prunes the rows (one clock for every replica).
_PRUNE = "DELETE FROM upload_sessions WHERE started < extract(epoch FROM now()) - $1"
_OWNER = "SELECT replica, tenancy, repo FROM upload_sessions WHERE uuid = $1"
_FORGET = "DELETE FROM upload_sessions WHERE uuid = $1"


@dataclass(frozen=True, slots=True)
class SessionOwner:
    """The replica (its server string) holding a session, and the repository it is for."""

    replica: str
    tenancy: str
    repo: str


class PostgresUploadSessions:
    """The tier's table of upload sessions; every call is one round trip."""

    def __init__(self, database: SharedDatabase) -> None:
        self._db = database

    def claim(self, uuid: str, replica: str, tenancy: str, repo: str) -> None:
        """``replica`` holds session ``uuid`` of ``tenancy``/``repo`` (rows past ``KEPT`` go)."""
        self._db.run("execute", _CLAIM, uuid, replica, tenancy, repo)
        self._db.run("execute", _PRUNE, KEPT)

    def owner(self, uuid: str) -> SessionOwner | None:
        """Who holds session ``uuid``; ``None`` when no replica claimed it."""
        row = self._db.run("fetchrow", _OWNER, uuid)
        return None if row is None else SessionOwner(row[0], row[1], row[2])

    def forget(self, uuid: str) -> None:
        """The session ended (committed, cancelled)."""
        self._db.run("execute", _FORGET, uuid)

    def close(self) -> None:
        """Close the connection pool."""
        self._db.close()
