"""Failed-login throttling per source address: too many failures in a window lock it out."""

from __future__ import annotations

from collections import deque

from mirror.clock import Clock
from mirror.errors import ErrorCode, RegistryError

_MAX_SOURCES = 100_000


class Throttle:
    """Counts failed logins per source; ``max_failures`` within ``window`` seconds refuse that
    source for ``lockout`` seconds with 429 ``TOOMANYREQUESTS`` and ``Retry-After``."""

    def __init__(self, clock: Clock, *, max_failures: int, window: float, lockout: float) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._lockout = lockout
        self._failures: dict[str, deque[float]] = {}
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

    def failed(self, source: str) -> None:
        """Count one failed login of ``source``; lock it out when over the limit."""
        now = self._clock.now()
        if len(self._failures) > _MAX_SOURCES:
            self._failures.clear()
        times = self._failures.setdefault(source, deque())
        times.append(now)
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._max:
            self._locked_until[source] = now + self._lockout
            times.clear()

    def succeeded(self, source: str) -> None:
        """A good login forgets the source's earlier failures."""
        self._failures.pop(source, None)

    def failures(self, source: str) -> int:
        """Failures of ``source`` counted in the current window."""
        return len(self._failures.get(source, ()))
