"""Logging as the ``mirror`` command sets it up: ``--log-level`` and ``--log-format``.

``text`` is one human line per record; ``json`` is one JSON object per line with ``time``
(RFC 3339, UTC), ``level``, ``logger`` and ``message``, plus the access-log fields
(``method``, ``path``, ``status``, ``bytes`` of body, ``duration_ms``, ``user_agent``,
``remote``, ``user``) on access lines and ``exception`` when there is one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def level_flag(text: str) -> str:
    """``--log-level``'s type: a level name in any case; a usage error otherwise."""
    if text.upper() not in LEVELS:
        raise argparse.ArgumentTypeError(
            f"unknown log level {text!r}: choose from {', '.join(LEVELS)}"
        )
    return text.upper()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON object (time, level, logger, message, and the access fields
        when set)."""
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            document.update(access)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


class DropParserTracebacks(logging.Filter):
    """aiohttp logs a request it could not parse with a traceback (``aiohttp.server``); the
    access log already says what it was, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop aiohttp's tracebacks for requests that were not HTTP (they are logged as one
        line)."""
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        # Imported here: every ``mirror`` command configures logging, few load aiohttp's server.
        from aiohttp.http_exceptions import HttpProcessingError

        return not isinstance(exc, HttpProcessingError)


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """A ``StreamHandler`` that, on an event loop's thread, writes the lines of one loop
    iteration with one write and flush when the iteration ends (under load, one system call
    for many access lines instead of one per line); from any other thread, at once, after
    what is pending, so the order is kept. Lines still pending at exit are written by
    ``logging.shutdown``'s flush."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the formatted line; write it now unless an event loop runs in this thread."""
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._write_pending)

    def _write_pending(self) -> None:
        """The end of the loop iteration: write what it logged (a failing stream is reported
        as ``Handler.handleError`` reports it, never raised into the loop)."""
        try:
            self.flush()
        except Exception:
            if logging.raiseExceptions:
                traceback.print_exc(file=sys.stderr)

    def flush(self) -> None:
        """Write every pending line in one go, then flush the stream."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._scheduled = False
            if self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                self.stream.write(text)
            if hasattr(self.stream, "flush"):
                self.stream.flush()


def skip_unused_record_fields() -> None:
    """Stop filling the record fields neither format shows (the caller's file and line, the
    thread, the process), as the logging HOWTO's "Optimization" section describes: on a small
    manifest request that work was a third of the access line's cost."""
    logging._srcfile = None  # the HOWTO's documented switch
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send every record at ``level`` and above to ``stream`` (stderr) in ``fmt``; like
    ``logging.basicConfig``, leaves a process that already configured logging as it is."""
    skip_unused_record_fields()
    handler = BatchedStreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, DropParserTracebacks) for f in server.filters):
        server.addFilter(DropParserTracebacks())
