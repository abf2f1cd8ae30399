"""Fail fast while an upstream is down, so stale-if-error answers at once.

Without it, every request to a black-holed upstream waits out its connect timeout on each
retry before the mirror can serve a cached tag. After ``threshold`` consecutive attempts
that got no usable answer (connect error, timeout, 5xx) the circuit opens: requests fail
immediately with ``UpstreamUnavailable`` for ``cooldown`` seconds. Then one request probes
(half-open); its answer closes the circuit or opens it for another cooldown.
"""

from __future__ import annotations

import logging

from mirror.clock import Clock, SystemClock
from mirror.errors import UpstreamUnavailable

log = logging.getLogger(__name__)


class CircuitBreaker:
    """The health of one upstream as its requests have seen it (cooldowns: monotonic time)."""

    def __init__(
        self,
        host: str,
        *,
        threshold: int = 3,
        cooldown: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self.host = host
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock or SystemClock()
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        """Whether requests are being refused now."""
        return self._open_until is not None

    def check(self) -> None:
        """Let a request through, or raise ``UpstreamUnavailable`` while the circuit is open
        (a single probe is let through once the cooldown has passed)."""
        if self._open_until is None or self.threshold <= 0:
            return
        if self._clock.monotonic() >= self._open_until and not self._probing:
            self._probing = True
            return
        raise UpstreamUnavailable(
            f"upstream {self.host} is down (failing fast for up to {self.cooldown:g} s)",
            detail={"upstream": self.host, "circuit": "open"},
        )

    def answered(self) -> None:
        """The upstream answered (any status below 500): it is up."""
        if self._open_until is not None:
            log.info("upstream %s answers again; closing its circuit", self.host)
        self._failures = 0
        self._open_until = None
        self._probing = False

    def failed(self) -> None:
        """An attempt got no usable answer."""
        self._failures += 1
        if self.threshold <= 0:
            return
        if self._probing or self._failures >= self.threshold:
            if self._open_until is None:
                log.warning(
                    "upstream %s failed %d times in a row; failing fast for %g s",
                    self.host,
                    self._failures,
                    self.cooldown,
                )
            self._open_until = self._clock.monotonic() + self.cooldown
            self._probing = False
