"""Writing a large metadata store fast, for retention benchmarks: every row inserted in one
SQLite transaction (``executemany``, no journal, the key index and diskcache's counting
triggers rebuilt once at the end, retention's summary tables rebuilt from the rows when the
store next opens) instead of one ``Metadata`` call per record, so a million images take
minutes rather than hours.

Keys are encoded by ``key_bytes``, the exact bytes diskcache's ``Disk.put`` stores for a tuple
of short strings (``pickletools.optimize`` costs ~100 us a key); records are pickled by the
mirror's own ``Disk`` (its stored class names), or copied from a ``Template`` pickled once with
placeholder strings of the same length. Retention reads exactly what a mirror would have
written.
"""

from __future__ import annotations

import pickle
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import MODE_PICKLE, MODE_RAW

from mirror.db import metadata
from mirror.db.metadata import Metadata
from mirror.db.pickled import dumps
from mirror.db.summary import FORGET

INSERT = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count,"
    " tag, size, mode, filename, value) VALUES (?, 0, ?, NULL, ?, 0, NULL, 0, ?, NULL, ?)"
)
# Statements around the bulk insert (one transaction, no journal, indexes built once).
SETUP = (
    "PRAGMA journal_mode=OFF",
    "PRAGMA synchronous=OFF",
    "BEGIN",
    "DROP INDEX Cache_key_raw",
    "DROP INDEX Cache_expire_time",
    "DROP TRIGGER Settings_count_insert",
    "DROP TRIGGER Settings_size_insert",
    # Retention's summary is rebuilt from the rows when ``close`` opens the store.
    FORGET,
)
FINISH = (
    "CREATE UNIQUE INDEX Cache_key_raw ON Cache(key, raw)",
    "CREATE INDEX Cache_expire_time ON Cache (expire_time)",
    "UPDATE Settings SET value = (SELECT COUNT(*) FROM Cache) WHERE key = 'count'",
    "COMMIT",
)
# Keys checked against diskcache's own encoding before the first write of each shape.
_TUPLE_OPS = {1: b"\x85", 2: b"\x86", 3: b"\x87"}


def key_bytes(key: tuple[str, ...]) -> bytes:
    """The bytes diskcache stores for ``key`` (a tuple of ASCII strings under 256 bytes):
    ``pickletools.optimize(pickle.dumps(key, protocol=5))``, built directly."""
    # ``bytes((n,))`` refuses a part of 256 bytes or more, ``encode`` a non-ASCII one.
    parts = b"".join([b"\x8c" + bytes((len(p),)) + p.encode("ascii") for p in key])
    op = _TUPLE_OPS.get(len(key))
    body = parts + op + b"." if op else b"(" + parts + b"t."
    return b"\x80\x05\x95" + len(body).to_bytes(8, "little") + body


class Template:
    """A record pickled once with placeholder strings, copied with the real strings (each the
    placeholder's length, so every opcode and frame length stays right)."""

    def __init__(self, pickled: bytes, placeholders: tuple[str, ...]) -> None:
        self._pieces: list[bytes] = [pickled]
        for placeholder in placeholders:
            head, tail = self._pieces[-1].split(placeholder.encode(), 1)
            self._pieces[-1:] = [head, tail]
        self._lengths = tuple(len(p) for p in placeholders)

    def fill(self, *values: str) -> bytes:
        """The record's pickle with ``values`` in place of the placeholders."""
        assert tuple(len(v) for v in values) == self._lengths
        out = [self._pieces[0]]
        for value, piece in zip(values, self._pieces[1:], strict=True):
            out += (value.encode(), piece)
        return b"".join(out)


def pickled(value: object) -> bytes:
    """``value`` pickled as the mirror's metadata store pickles it."""
    disk: Any = metadata._DISK
    return dumps(value, pickle.HIGHEST_PROTOCOL, disk.NAMES)


class BulkMetadata:
    """A metadata directory opened for one bulk write (``add``/``add_pickled``, then
    ``close``)."""

    def __init__(self, directory: Path) -> None:
        Metadata(directory).close()  # the schema, exactly as the mirror creates it
        self._directory = directory
        self._check = diskcache.Disk(str(directory), pickle_protocol=pickle.HIGHEST_PROTOCOL)
        self._checked: set[str] = set()
        self._db = sqlite3.connect(str(directory / "cache.db"), isolation_level=None)
        for statement in SETUP:
            self._db.execute(statement)
        self._now = time.time()
        self._rows: list[tuple[Any, ...]] = []

    def _key(self, key: tuple[str, ...]) -> bytes:
        encoded = key_bytes(key)
        if key[0] not in self._checked:
            assert bytes(self._check.put(key)[0]) == encoded, key
            self._checked.add(key[0])
        return encoded

    def add(self, key: tuple[str, ...], value: object) -> None:
        """Queue one record (a float is stored raw, anything else pickled by the C pickler
        under its class's current name, which the metadata store reads as its own)."""
        if type(value) is float:
            self._rows.append((self._key(key), self._now, self._now, MODE_RAW, value))
            if len(self._rows) >= 50_000:
                self._flush()
        else:
            self.add_pickled(key, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def add_pickled(self, key: tuple[str, ...], data: bytes) -> None:
        """Queue one record already pickled (``pickled`` or a ``Template``'s ``fill``)."""
        self._rows.append((self._key(key), self._now, self._now, MODE_PICKLE, data))
        if len(self._rows) >= 50_000:
            self._flush()

    def add_all(self, records: Iterable[tuple[tuple[str, ...], object]]) -> None:
        """Queue many records."""
        for key, value in records:
            self.add(key, value)

    def _flush(self) -> None:
        self._db.executemany(INSERT, self._rows)
        self._rows.clear()

    def close(self) -> None:
        """Write what is queued, rebuild the index and triggers, commit and close."""
        self._flush()
        for statement in FINISH:
            self._db.execute(statement)
        self._db.close()
        # diskcache recreates its triggers (IF NOT EXISTS) and WAL mode when it opens, the
        # store retention's summary of the rows.
        Metadata(self._directory).close()
