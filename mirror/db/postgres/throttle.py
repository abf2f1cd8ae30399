"""Failed-login throttling counted across the tier, in PostgreSQL (migration 0004): the
rules of ``mirror.auth.throttle.Throttle``, with each failure one atomic server-side step so
failures at every replica add up to one count per source address."""

from __future__ import annotations

from mirror.clock import Clock
from mirror.db.postgres.shared import SharedDatabase
from mirror.errors import ErrorCode, RegistryError

_LOCKED = "SELECT until FROM login_lockouts WHERE source = $1 AND until > $2"
_FAILED = "SELECT mirror_login_failed($1, $2, $3, $4, $5, $6)"
_FORGIVE = "DELETE FROM login_failures WHERE source = $1 AND username = $2"
_COUNT = "SELECT count(*) FROM login_failures WHERE source = $1 AND at > $2"
_COUNT_USER = _COUNT + " AND username = $3"


class PostgresThrottle:
    """Counts failed logins per source and user for the whole tier; ``max_failures`` of a
    source within ``window`` seconds, at any replicas, refuse it for ``lockout`` seconds at
    every replica with 429 ``TOOMANYREQUESTS`` and ``Retry-After``."""

    def __init__(
        self,
        database: SharedDatabase,
        clock: Clock,
        *,
        max_failures: int,
        window: float,
        lockout: float,
    ) -> None:
        self._db = database
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._lockout = lockout

    def check(self, source: str) -> None:
        """Raise ``TOOMANYREQUESTS`` while ``source`` is locked out."""
        now = self._clock.now()
        until = self._db.run("fetchval", _LOCKED, source, now)
        if until is None:
            return
        raise RegistryError(
            ErrorCode.TOOMANYREQUESTS,
            "too many failed logins from this address",
            headers={"Retry-After": str(max(1, int(until - now + 0.999)))},
        )

    def failed(self, source: str, user: str = "") -> None:
        """Count one failed login of ``user`` from ``source`` (the lockout, when it reaches
        the limit, is taken in the same step)."""
        now = self._clock.now()
        self._db.run("fetchval", _FAILED, source, user, now, self._window, self._max, self._lockout)

    def succeeded(self, source: str, user: str = "") -> None:
        """A good login of ``user`` forgives that user's failures from ``source`` only."""
        self._db.run("execute", _FORGIVE, source, user)

    def failures(self, source: str, user: str | None = None) -> int:
        """Failures of ``source`` (of ``user`` only, when given) in the current window."""
        since = self._clock.now() - self._window
        if user is None:
            return int(self._db.run("fetchval", _COUNT, source, since))
        return int(self._db.run("fetchval", _COUNT_USER, source, since, user))
