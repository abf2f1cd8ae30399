"""Console sessions: kept server-side in the data directory, for an explicit lifetime, ended
by signing out.

A session names the auth token it was opened with; every request re-checks that the token is
still active, so revoking it (or deleting its user) ends the session at once. Sessions are
rows of a small diskcache (SQLite) database under ``<data_dir>/console/sessions``: they survive
a restart, and every process serving the same data directory sees the same sessions (a
sign-out in one is a sign-out in all). At rest a session is keyed by the SHA-256 of its id
and holds no secret: the id is only in the browser's cookie, and the CSRF token is derived
from the id (so it cannot be computed from what is on disk either).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

import diskcache

from mirror.clock import Clock

_MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: who, with which auth token, its CSRF token, and until when."""

    id: str
    tenancy: str
    user: str
    token_id: str
    csrf: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class StoredSession:
    """What is kept on disk of a session (no id, no CSRF token)."""

    tenancy: str
    user: str
    token_id: str
    expires_at: float


def session_key(session_id: str) -> str:
    """The key a session is stored under: the SHA-256 of its id."""
    return hashlib.sha256(b"console-session:" + session_id.encode()).hexdigest()


def csrf_of(session_id: str) -> str:
    """The session's CSRF token, derived from its secret id."""
    return hashlib.sha256(b"console-csrf:" + session_id.encode()).hexdigest()


class SessionStore:
    """Open sessions under ``directory``; at most ``max_sessions`` (the soonest to expire is
    dropped first). The database is opened on first use and closed by :meth:`shut`."""

    def __init__(
        self,
        directory: Path,
        clock: Clock,
        *,
        lifetime: float,
        max_sessions: int = _MAX_SESSIONS,
    ) -> None:
        self._directory = directory
        self._clock = clock
        self.lifetime = lifetime
        self._max = max_sessions
        self._cache: diskcache.Cache | None = None

    @property
    def _db(self) -> diskcache.Cache:
        if self._cache is None:
            self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._cache = diskcache.Cache(str(self._directory), eviction_policy="none")
        return self._cache

    def open(self, tenancy: str, user: str, token_id: str) -> Session:
        """A new session for ``tenancy/user`` signed in with ``token_id``."""
        session_id = secrets.token_urlsafe(32)
        expires_at = self._clock.now() + self.lifetime
        stored = StoredSession(tenancy, user, token_id, expires_at)
        # diskcache's own expiry (wall clock) removes rows nobody signs out of.
        self._db.set(session_key(session_id), stored, expire=self.lifetime)
        self._bound()
        return Session(session_id, tenancy, user, token_id, csrf_of(session_id), expires_at)

    def get(self, session_id: str | None) -> Session | None:
        """The live session of that id (an expired one is forgotten and ``None``)."""
        if not session_id:
            return None
        key = session_key(session_id)
        stored = self._db.get(key)
        if not isinstance(stored, StoredSession):
            return None
        if self._clock.now() >= stored.expires_at:
            self._db.delete(key)
            return None
        return Session(
            session_id,
            stored.tenancy,
            stored.user,
            stored.token_id,
            csrf_of(session_id),
            stored.expires_at,
        )

    def close(self, session_id: str) -> None:
        """End a session (signing out): its cookie is worthless from now on, in every process."""
        self._db.delete(session_key(session_id))

    def keys(self) -> list[str]:
        """The stored keys (hashes of session ids)."""
        return [str(k) for k in self._db.iterkeys()]

    def __len__(self) -> int:
        return len(self._db)

    def shut(self) -> None:
        """Close the database (the sessions stay on disk)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def _bound(self) -> None:
        db = self._db
        if len(db) <= self._max:
            return
        db.expire()
        now = self._clock.now()
        rows = [(k, db.get(k)) for k in list(db.iterkeys())]
        live = []
        for key, stored in rows:
            if not isinstance(stored, StoredSession) or stored.expires_at <= now:
                db.delete(key)
            else:
                live.append((stored.expires_at, str(key)))
        for _, key in sorted(live)[: max(len(live) - self._max, 0)]:
            db.delete(key)
