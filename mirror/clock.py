"""Time as a parameter: the system clocks for production, a hand-moved one for tests and dry runs.

``now`` is wall time (seconds since the epoch: what is stored, compared with ``Date`` headers
and retention ages); ``monotonic`` never jumps and measures intervals (token lifetimes,
breaker cooldowns, refresh periods).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """The wall time and a monotonic time, both in seconds."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...


class SystemClock:
    """The real clocks: ``time.time`` and ``time.monotonic``."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; :meth:`advance` moves both of its times."""

    def __init__(self, start: float = 1_700_000_000.0, monotonic_start: float = 1_000.0) -> None:
        self._now = start
        self._monotonic = monotonic_start

    def now(self) -> float:
        """The wall time it was set to."""
        return self._now

    def monotonic(self) -> float:
        """The monotonic time it was set to."""
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (never backwards: that is what a monotonic clock promises)."""
        if seconds < 0:
            raise ValueError("a clock cannot be moved backwards")
        self._now += seconds
        self._monotonic += seconds
