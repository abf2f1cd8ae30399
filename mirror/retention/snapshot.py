"""Retention's snapshot of the metadata: one pass over the database spilled into a temporary
SQLite index, read back one repository at a time, so a run over millions of images holds one
repository's records in memory, never the whole cache."""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from mirror.db.metadata import ManifestRecord, TagRecord

SCHEMA = """
CREATE TABLE manifest (digest TEXT, media_type TEXT, size INTEGER, cached_at REAL, refs TEXT);
CREATE TABLE tag (upstream TEXT, repo TEXT, tag TEXT, digest TEXT);
CREATE TABLE pull (upstream TEXT, repo TEXT, digest TEXT, at REAL);
"""
# Built once after the bulk insert (sorting once beats inserting into B-trees in random
# order). Keys are unique in the metadata database, so every manifest and pull is too.
INDEXES = (
    "CREATE UNIQUE INDEX manifest_digest ON manifest (digest)",
    "CREATE UNIQUE INDEX pull_key ON pull (upstream, repo, digest)",
    "CREATE INDEX tag_repo ON tag (upstream, repo)",
)
# Page cache of the temporary index, KiB (indexes are sorted within it).
CACHE_KIB = 32 * 1024
# Repositories with at least one tag or last pull of a cached manifest, in name order.
REPOSITORIES = """
SELECT upstream, repo FROM tag JOIN manifest USING (digest)
UNION SELECT upstream, repo FROM pull JOIN manifest USING (digest)
ORDER BY 1, 2
"""
# What ``Digest.parse`` accepts.
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
# Rows inserted per statement while the snapshot is spilled.
BATCH = 5_000
# Digests looked up per statement (under SQLite's limit on parameters).
LOOKUP = 500


class SnapshotRecords(Protocol):
    """The metadata a snapshot is read from: every record in one pass, and batched pulls."""

    def records(self, kinds: Iterable[str]) -> Iterator[tuple[tuple[str, ...], object]]:
        """Every ``(key, record)`` of those kinds, in one pass."""
        ...

    def pending_pulls(self) -> dict[tuple[str, str, str], float]:
        """Last pulls not flushed yet."""
        ...


class Snapshot:
    """The tags, last pulls and manifest records of the cache as one pass read them."""

    def __init__(self, metadata: SnapshotRecords, directory: Path | None = None) -> None:
        handle, name = tempfile.mkstemp(prefix="retention-", suffix=".db", dir=directory)
        os.close(handle)
        self._path = Path(name)
        # Read back from whichever worker thread the run continues on, one at a time.
        self._db = sqlite3.connect(name, check_same_thread=False, isolation_level=None)
        self._db.executescript(
            f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-{CACHE_KIB};"
            + SCHEMA
        )
        self._spill(metadata)

    def _spill(self, metadata: SnapshotRecords) -> None:
        rows: dict[str, list[tuple[object, ...]]] = {"manifest": [], "tag": [], "pull": []}
        insert = {
            "manifest": "INSERT INTO manifest VALUES (?, ?, ?, ?, ?)",
            "tag": "INSERT INTO tag VALUES (?, ?, ?, ?)",
            "pull": "INSERT INTO pull VALUES (?, ?, ?, ?)",
        }
        self._db.execute("BEGIN")
        for key, value in metadata.records(("manifest", "tag", "pull")):
            row = _row(key, value)
            if row is None:
                continue
            batch = rows[key[0]]
            batch.append(row)
            if len(batch) >= BATCH:
                self._db.executemany(insert[key[0]], batch)
                batch.clear()
        for kind, batch in rows.items():
            self._db.executemany(insert[kind], batch)
        for index in INDEXES:
            self._db.execute(index)
        # Pulls not flushed yet replace the stored ones.
        pending = [(*where, when) for where, when in metadata.pending_pulls().items()]
        self._db.executemany(
            "INSERT OR REPLACE INTO pull VALUES (?, ?, ?, ?)",
            [row for row in pending if _digest(row[2]) is not None],
        )
        self._db.execute("COMMIT")

    def repositories(self) -> Iterator[tuple[str, str]]:
        """Every ``(upstream, repo)`` with an image, in name order."""
        yield from self._db.execute(REPOSITORIES)

    def tags(self, upstream: str, repo: str) -> dict[str, list[str]]:
        """The tags of ``repo`` by the cached manifest they point at."""
        found: dict[str, list[str]] = {}
        query = (
            "SELECT tag, digest FROM tag JOIN manifest USING (digest) WHERE upstream=? AND repo=?"
        )
        for tag, digest in self._db.execute(query, (upstream, repo)):
            found.setdefault(digest, []).append(tag)
        return found

    def pulls(self, upstream: str, repo: str) -> dict[str, float]:
        """The last pull of each cached manifest of ``repo``."""
        query = (
            "SELECT digest, at FROM pull JOIN manifest USING (digest) WHERE upstream=? AND repo=?"
        )
        return dict(self._db.execute(query, (upstream, repo)))

    def manifests(self, digests: Iterable[str]) -> dict[str, ManifestRecord]:
        """The records of those of ``digests`` that are cached manifests."""
        found: dict[str, ManifestRecord] = {}
        wanted = list(digests)
        for start in range(0, len(wanted), LOOKUP):
            chunk = wanted[start : start + LOOKUP]
            query = (
                "SELECT digest, media_type, size, cached_at, refs FROM manifest"
                f" WHERE digest IN ({','.join('?' * len(chunk))})"
            )
            for digest, media_type, size, cached_at, refs in self._db.execute(query, chunk):
                found[digest] = ManifestRecord(
                    media_type, size, tuple(refs.split("\n")) if refs else (), cached_at
                )
        return found

    def manifest(self, digest: str) -> ManifestRecord | None:
        """The record of cached manifest ``digest``, or ``None``."""
        query = "SELECT media_type, size, cached_at, refs FROM manifest WHERE digest=?"
        row = self._db.execute(query, (digest,)).fetchone()
        if row is None:
            return None
        media_type, size, cached_at, refs = row
        return ManifestRecord(media_type, size, tuple(refs.split("\n")) if refs else (), cached_at)

    def close(self) -> None:
        """Drop the index."""
        self._db.close()
        self._path.unlink(missing_ok=True)


def _digest(text: object) -> str | None:
    """``text`` as a digest's canonical string, or ``None`` if it is not a digest (what
    ``Digest.parse`` accepts, whose canonical string is the text itself)."""
    return text if isinstance(text, str) and _DIGEST.fullmatch(text) else None


def _row(key: tuple[str, ...], value: object) -> tuple[object, ...] | None:
    """The index row of one metadata record (``None``: malformed, nothing is cached under it)."""
    kind = key[0]
    if kind == "manifest" and len(key) == 2 and isinstance(value, ManifestRecord):
        digest = _digest(key[1])
        # Only the references that are digests (as ``ManifestRecord.referenced`` reads them).
        refs = "\n".join(r for r in value.references if _digest(r) is not None)
        return (
            None
            if digest is None
            else (digest, value.media_type, value.size, value.cached_at, refs)
        )
    if kind == "tag" and len(key) == 4 and isinstance(value, TagRecord):
        digest = _digest(value.digest)
        return None if digest is None else (key[1], key[2], key[3], digest)
    if kind == "pull" and len(key) == 4 and value is not None:
        digest = _digest(key[3])
        return None if digest is None else (key[1], key[2], digest, float(value))  # type: ignore[arg-type]
    return None
