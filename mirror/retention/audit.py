"""The audit log: one JSON object per line for every deletion, with the reason; on a tier
also a row in the shared database, so any replica reads what every replica did."""

from __future__ import annotations

import datetime
import functools
import json
import logging
from pathlib import Path
from typing import Any, Protocol

from mirror.clock import Clock
from mirror.db.roles import MetadataUnavailable

log = logging.getLogger(__name__)


def iso(when: float | None) -> str | None:
    """``when`` (epoch seconds) as ISO 8601 UTC, or ``None`` (what ``iso_of`` gives, read
    from a memo of hours: a report has millions of times)."""
    if when is None:
        return None
    try:
        second = int(when // 1)
        # A fraction this far from the next second cannot round up to it (``fromtimestamp``
        # rounds to microseconds, then the seconds are cut).
        if when - second < 0.999999:
            minute, at = divmod(second % 3600, 60)
            return f"{_hour(second // 3600)}{minute:02d}:{at:02d}Z"
    except (OverflowError, ValueError):
        pass
    return iso_of(when)


def iso_of(when: float) -> str:
    """``when`` (epoch seconds) as ISO 8601 UTC, to the second."""
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=4096)
def _hour(hour: int) -> str:
    """``YYYY-MM-DDTHH:`` of the hour ``hour`` hours after the epoch."""
    return iso_of(hour * 3600)[:14]


class SharedAudit(Protocol):
    """Where a tier's replicas all write their events and read everyone's."""

    def append(self, event: dict[str, Any]) -> None:
        """Record one event (``MetadataUnavailable`` when it cannot)."""
        ...

    def read(self) -> list[dict[str, Any]]:
        """Every replica's events, oldest first."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class AuditLog:
    """Appends events to a JSON-lines file (shared safely by the server and the CLI: each
    event is one ``O_APPEND`` write) and, on a tier, to ``shared``, which reads then answer."""

    def __init__(self, path: Path, clock: Clock, shared: SharedAudit | None = None) -> None:
        self.path = Path(path)
        self._clock = clock
        self._shared = shared
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> None:
        """Record ``event`` with ``fields``; a failure to write is logged, never raised (the
        deletion already happened)."""
        now = self._clock.now()
        record = {"time": iso(now), "ts": now, "event": event, **fields}
        line = json.dumps(record) + "\n"
        try:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
        except OSError as exc:
            log.error("cannot write the retention audit log %s: %s (%s)", self.path, exc, line)
        if self._shared is not None:
            try:
                self._shared.append(record)
            except MetadataUnavailable as exc:
                log.error("cannot write the tier's audit log: %s (%s)", exc, line.strip())

    def read(self) -> list[dict[str, Any]]:
        """Every recorded event, oldest first: the tier's when shared, else this file's."""
        if self._shared is not None:
            return self._shared.read()
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        """Release the shared log's connection (the file needs nothing)."""
        if self._shared is not None:
            self._shared.close()
