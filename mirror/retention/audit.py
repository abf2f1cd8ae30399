"""The audit log: one JSON object per line for every deletion, with the reason; on a tier
also a row in the shared database, so any replica reads what every replica did. Events older
than ``retention.audit_keep_days`` are pruned from both (``prune``, ``prune_periodically``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

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

    def prune(self, before: float) -> int:
        """Delete every replica's events older than ``before``; how many went."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class AuditLog:
    """Appends events to a JSON-lines file (shared safely by the server and the CLI: each
    event is one ``O_APPEND`` write under a shared ``flock``, which a prune takes exclusively)
    and, on a tier, to ``shared``, which reads then answer."""

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
            with self._appending() as out:
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

    @contextlib.contextmanager
    def _appending(self) -> Iterator[IO[str]]:
        """The file open for appending under a shared lock; reopened when a prune replaced
        it while this writer waited for the lock (its line would go to the old file)."""
        while True:
            with self.path.open("a", encoding="utf-8") as out:
                fcntl.flock(out, fcntl.LOCK_SH)
                try:
                    current = os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = -1
                if os.fstat(out.fileno()).st_ino == current:
                    yield out
                    return

    def prune(self, before: float) -> int:
        """Drop the events older than ``before`` (epoch seconds) from the file and, on a tier,
        from the shared log; the events dropped (the file's and the tier's)."""
        dropped = self._prune_file(before)
        if self._shared is not None:
            dropped += self._shared.prune(before)
        return dropped

    def _prune_file(self, before: float) -> int:
        """Rewrite the file without its events older than ``before``: line by line into a
        new file, fsynced, then renamed over it, under the exclusive lock (writers wait)."""
        try:
            source = self.path.open("r", encoding="utf-8")
        except FileNotFoundError:
            return 0
        fresh = self.path.with_name(self.path.name + ".pruning")
        with source:
            fcntl.flock(source, fcntl.LOCK_EX)
            dropped = 0
            with fresh.open("w", encoding="utf-8") as out:
                for line in source:
                    if _older(line, before):
                        dropped += 1
                        continue
                    out.write(line)
                    # Lines are in time order: the rest is copied as it is.
                    out.writelines(source)
                    break
                out.flush()
                os.fsync(out.fileno())
            if dropped:
                os.replace(fresh, self.path)
            else:
                fresh.unlink()
        return dropped

    def close(self) -> None:
        """Release the shared log's connection (the file needs nothing)."""
        if self._shared is not None:
            self._shared.close()


def _older(line: str, before: float) -> bool:
    """Whether a file line is an event from before ``before`` (a line that does not parse is
    kept: it is not this prune's to judge)."""
    try:
        ts = json.loads(line).get("ts")
    except (ValueError, AttributeError):
        return False
    return isinstance(ts, int | float) and ts < before


# Seconds between two prunes of the audit log by the server.
PRUNE_INTERVAL = 6 * 3600.0


async def prune_periodically(
    audit: AuditLog,
    keep: float,
    clock: Clock,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    interval: float = PRUNE_INTERVAL,
) -> None:
    """Prune the events older than ``keep`` seconds now and every ``interval`` seconds (in a
    thread: the file and the database block); a failure is logged and tried again later."""
    while True:
        try:
            dropped = await asyncio.to_thread(audit.prune, clock.now() - keep)
        except (OSError, MetadataUnavailable) as exc:
            log.warning("cannot prune the retention audit log (tried again later): %s", exc)
        else:
            if dropped:
                log.info("pruned %d audit events older than %.0f days", dropped, keep / 86400)
        await sleep(interval)
