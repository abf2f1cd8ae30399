"""Writing a large metadata store fast, for retention benchmarks: rows inserted in bulk in one
diskcache transaction per batch, instead of one ``Metadata`` call (and one transaction) per
record, which takes minutes per 100,000 images.

Records are pickled by the C pickler under their current class names; ``Metadata`` reads them
as it reads its own (it maps stored names back and falls back to the class's own), so
retention sees exactly the records a mirror would have written.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import MODE_PICKLE, MODE_RAW

from mirror.db.metadata import Metadata

INSERT = (
    "INSERT OR REPLACE INTO Cache(key, raw, store_time, expire_time, access_time, access_count,"
    " tag, size, mode, filename, value) VALUES (?, ?, ?, NULL, ?, 0, NULL, 0, ?, NULL, ?)"
)


class BulkMetadata:
    """A metadata directory opened for bulk writes (``add`` then ``commit``)."""

    def __init__(self, directory: Path) -> None:
        Metadata(directory).close()  # the schema, exactly as the mirror creates it
        self._cache = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**62)
        self._rows: list[tuple[Any, ...]] = []

    def add(self, key: tuple[str, ...], value: object) -> None:
        """Queue one record (a float is stored raw, anything else pickled)."""
        db_key, raw = self._cache._disk.put(key)
        now = time.time()
        if type(value) is float:
            self._rows.append((db_key, raw, now, now, MODE_RAW, value))
        else:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            self._rows.append((db_key, raw, now, now, MODE_PICKLE, data))

    def add_all(self, records: Iterable[tuple[tuple[str, ...], object]]) -> None:
        """Queue many records."""
        for key, value in records:
            self.add(key, value)

    def commit(self) -> None:
        """Write the queued records in one transaction."""
        with self._cache.transact():
            self._cache._con.executemany(INSERT, self._rows)
        self._rows.clear()

    def close(self) -> None:
        """Write what is queued and close."""
        self.commit()
        self._cache.close()
