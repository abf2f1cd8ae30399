"""Failed-login throttling per source address: too many failures in a window lock it out.

Failures are counted per source address and, within it, per login name. The address is
locked out when all its failures together reach the limit; a good login forgives only the
failures of the user who logged in, so one valid account cannot wipe the count of guesses
against other accounts from the same address.

Both memos are bounded: past ``max_sources`` addresses the one that failed least recently
is forgotten (an address that keeps guessing stays counted, however many others fail), and
lockouts that ran out, then the soonest to run out, are dropped.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Protocol

from mirror.clock import Clock
from mirror.errors import ErrorCode, RegistryError

_MAX_SOURCES = 100_000


class LoginThrottle(Protocol):
    """What a login asks of throttling: this process's :class:`Throttle`, or the tier's
    ``mirror.db.postgres.throttle.PostgresThrottle`` counting at every replica."""

    def check(self, source: str) -> None:
        """Raise ``TOOMANYREQUESTS`` while ``source`` is locked out."""

    def failed(self, source: str, user: str = "") -> None:
        """Count one failed login of ``user`` from ``source``."""

    def succeeded(self, source: str, user: str = "") -> None:
        """Forgive ``user``'s failures from ``source``."""


class Throttle:
    """Counts failed logins per source and user; ``max_failures`` of a source within
    ``window`` seconds refuse that source for ``lockout`` seconds with 429
    ``TOOMANYREQUESTS`` and ``Retry-After``."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_failures: int,
        window: float,
        lockout: float,
        max_sources: int = _MAX_SOURCES,
    ) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._lockout = lockout
        self._max_sources = max_sources
        # Least recently failed first; lockouts in the order they run out (one lockout length).
        self._failures: OrderedDict[str, dict[str, deque[float]]] = OrderedDict()
        self._locked_until: OrderedDict[str, float] = OrderedDict()

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
        users = self._failures.setdefault(source, {})
        self._failures.move_to_end(source)
        users.setdefault(user, deque()).append(now)
        self._expire(source, now)
        if self.failures(source) >= self._max:
            self._lock(source, now)
            del self._failures[source]
        while len(self._failures) > self._max_sources:
            self._failures.popitem(last=False)

    def _lock(self, source: str, now: float) -> None:
        """Lock ``source`` out, keeping at most ``max_sources`` lockouts: the oldest (expired,
        or the soonest to expire, since every lockout lasts as long) is dropped first."""
        self._locked_until.pop(source, None)
        self._locked_until[source] = now + self._lockout
        while len(self._locked_until) > self._max_sources:
            self._locked_until.popitem(last=False)

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
