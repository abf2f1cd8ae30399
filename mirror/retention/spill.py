"""A run report's lines kept on disk while the run goes on, so a run over millions of images
holds none of them in memory: appended as JSON lines to an anonymous temporary file (gone
when closed, or when the process ends), read back in order."""

from __future__ import annotations

import json
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import cast

from mirror.retention.lines import Line


class ReportLines:
    """The lines of one report, in the order they were added."""

    def __init__(self, directory: Path | None = None) -> None:
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8", dir=directory)
        # Closed with the report at the latest (an answered report is simply dropped).
        self._closed = weakref.finalize(self, self._file.close)
        self.count = 0

    def extend(self, lines: Iterable[Line]) -> None:
        """Append ``lines``."""
        self._file.seek(0, 2)
        for line in lines:
            self._file.write(json.dumps(line) + "\n")
            self.count += 1

    def __iter__(self) -> Iterator[Line]:
        """Every line, oldest first."""
        self._file.flush()
        self._file.seek(0)
        for text in self._file:
            yield cast(Line, tuple(json.loads(text)))

    def close(self) -> None:
        """Drop the file."""
        self._closed()
