"""Failed-login throttling per source address: too many failures in a window lock it out.

Failures are counted per source address and, within it, per login name. The address is
locked out when all its failures together reach the limit; a good login forgives only the
failures of the user who logged in, so one valid account cannot wipe the count of guesses
against other accounts from the same address.
"""

from __future__ import annotations

from collections import deque

from mirror.clock import Clock
from mirror.errors import ErrorCode, RegistryError

_MAX_SOURCES = 100_000


class Throttle:
    """Counts failed logins per source and user; ``max_failures`` of a source within
    ``window`` seconds refuse that source for ``lockout`` seconds with 429
    ``TOOMANYREQUESTS`` and ``Retry-After``."""

    def __init__(self, clock: Clock, *, max_failures: int, window: float, lockout: float) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._lockout = lockout
        self._failures: dict[str, dict[str, deque[float]]] = {}
        self._locked_until: dict[str, float] = {}

    def check(self, source: str) -> None:
        """Raise ``TOOMANYREQUESTS`` while ``source`` is locked out."""
        until = self._locked_until.get(source)
        if until is None:
            return
        now = self._clock.now()
        if now >= until:
            del self._locked_until[source]
            return
        raise RegistryError(
            ErrorCode.TOOMANYREQUESTS,
            "too many failed logins from this address",
            headers={"Retry-After": str(max(1, int(until - now + 0.999)))},
        )

    def failed(self, source: str, user: str = "") -> None:
        """Count one failed login of ``user`` from ``source``; lock the source out when its
        failures (of every user) reach the limit."""
        now = self._clock.now()
        if len(self._failures) > _MAX_SOURCES:
            self._failures.clear()
        users = self._failures.setdefault(source, {})
        users.setdefault(user, deque()).append(now)
        self._expire(source, now)
        if self.failures(source) >= self._max:
            self._locked_until[source] = now + self._lockout
            del self._failures[source]

    def succeeded(self, source: str, user: str = "") -> None:
        """A good login of ``user`` forgives that user's failures from ``source`` only."""
        users = self._failures.get(source)
        if users is not None:
            users.pop(user, None)
            if not users:
                del self._failures[source]

    def failures(self, source: str, user: str | None = None) -> int:
        """Failures of ``source`` (of ``user`` only, when given) in the current window."""
        users = self._failures.get(source, {})
        if user is not None:
            return len(users.get(user, ()))
        return sum(len(times) for times in users.values())

    def _expire(self, source: str, now: float) -> None:
        """Forget the failures of ``source`` older than the window."""
        users = self._failures[source]
        for user in list(users):
            times = users[user]
            while times and times[0] <= now - self._window:
                times.popleft()
            if not times:
                del users[user]
