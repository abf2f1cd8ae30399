"""Console sessions: kept server-side, for an explicit lifetime, ended by signing out.

A session names the auth token it was opened with; every request re-checks that the token is
still active, so revoking it (or deleting its user) ends the session at once. Sessions live in
memory only: a restart signs everyone out, and nothing secret is ever written to disk.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

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


class SessionStore:
    """Open sessions by id; at most ``max_sessions`` (the oldest is dropped first)."""

    def __init__(self, clock: Clock, *, lifetime: float, max_sessions: int = _MAX_SESSIONS) -> None:
        self._clock = clock
        self.lifetime = lifetime
        self._max = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, tenancy: str, user: str, token_id: str) -> Session:
        """A new session for ``tenancy/user`` signed in with ``token_id``."""
        session = Session(
            secrets.token_urlsafe(32),
            tenancy,
            user,
            token_id,
            secrets.token_urlsafe(32),
            self._clock.now() + self.lifetime,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of that id (an expired one is forgotten and ``None``)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if self._clock.now() >= session.expires_at:
            del self._sessions[session_id]
            return None
        return session

    def close(self, session_id: str) -> None:
        """End a session (signing out): its cookie is worthless from now on."""
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)
