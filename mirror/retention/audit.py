"""The audit log: one JSON object per line for every deletion, with the reason."""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

from mirror.clock import Clock

log = logging.getLogger(__name__)


def iso(when: float | None) -> str | None:
    """``when`` (epoch seconds) as ISO 8601 UTC, or ``None``."""
    if when is None:
        return None
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class AuditLog:
    """Appends events to a JSON-lines file (shared safely by the server and the CLI: each
    event is one ``O_APPEND`` write)."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = Path(path)
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> None:
        """Record ``event`` with ``fields``; a failure to write is logged, never raised (the
        deletion already happened)."""
        now = self._clock.now()
        line = json.dumps({"time": iso(now), "ts": now, "event": event, **fields}) + "\n"
        try:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
        except OSError as exc:
            log.error("cannot write the retention audit log %s: %s (%s)", self.path, exc, line)

    def read(self) -> list[dict[str, Any]]:
        """Every recorded event, oldest first."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]
