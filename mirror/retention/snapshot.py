"""Retention's snapshot of the metadata: one pass over the database spilled into a temporary
SQLite index, read back one repository at a time, so a run over millions of images holds one
repository's records in memory, never the whole cache."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from mirror.db.metadata import ManifestRecord
from mirror.db.roles import SnapshotRows
from mirror.db.summary import DIGEST, refs_json

# Repositories are numbered as the pass meets them (``repo``), so rows carry an integer.
SCHEMA = """
CREATE TABLE repo (id INTEGER PRIMARY KEY, upstream TEXT, repo TEXT);
CREATE TABLE manifest (digest TEXT, media_type TEXT, size INTEGER, cached_at REAL, refs TEXT);
CREATE TABLE tag (repo INTEGER, tag TEXT, digest TEXT);
CREATE TABLE pull (repo INTEGER, digest TEXT, at REAL);
CREATE TABLE untagged (repo INTEGER, digest TEXT, at REAL);
"""
# Built once after the bulk insert (sorting once beats inserting into B-trees in random
# order). Keys are unique in the metadata database, so every manifest and pull is too. The
# manifest and tag indexes cover what a repository's images are read with.
INDEXES = (
    "CREATE INDEX manifest_facts ON manifest (digest, media_type, size, cached_at)",
    "CREATE UNIQUE INDEX pull_key ON pull (repo, digest)",
    "CREATE INDEX tag_repo ON tag (repo, digest, tag)",
    "CREATE INDEX untagged_repo ON untagged (repo)",
    # Which references of each cached manifest are cached manifests (an index's children).
    """CREATE TABLE child AS SELECT m.digest AS parent, r.value AS child
       FROM manifest m, json_each(m.refs) r JOIN manifest c ON c.digest = r.value""",
    "CREATE INDEX child_parent ON child (parent)",
)
# A snapshot of a store with retention's summary tables (``mirror.db.summary``): copied in
# one read transaction of the store's database (attached as ``src``), rows under a digest
# only (the summary keeps no others), each repository numbered once.
COPY = (
    """INSERT INTO manifest SELECT digest, media_type, size, cached_at, refs
       FROM src.retention_manifest""",
    """INSERT INTO repo (upstream, repo) SELECT upstream, repo FROM src.retention_tag
       UNION SELECT upstream, repo FROM src.retention_pull
       UNION SELECT upstream, repo FROM src.retention_untagged""",
    "CREATE UNIQUE INDEX repo_name ON repo (upstream, repo)",
    """INSERT INTO tag SELECT r.id, t.tag, t.digest
       FROM src.retention_tag t JOIN repo r USING (upstream, repo)""",
    """INSERT INTO pull SELECT r.id, p.digest, p.at
       FROM src.retention_pull p JOIN repo r USING (upstream, repo)""",
    """INSERT INTO untagged SELECT r.id, u.digest, u.at
       FROM src.retention_untagged u JOIN repo r USING (upstream, repo)
       ORDER BY u.upstream, u.repo, u.seq""",
)
# Page cache of a copy's reads of the store's database, KiB (each page is read once).
SOURCE_CACHE_KIB = 2048
# Page cache of the temporary index, KiB (indexes are sorted within it).
CACHE_KIB = 32 * 1024
# Every repository with a tag or a last pull, in name order (one without a cached manifest
# among them has no images).
REPOSITORIES = "SELECT id, upstream, repo FROM repo ORDER BY upstream, repo"
# A repository's images, in digest order: the digests its tags and last pulls name that are
# cached manifests, each with its tags there (newline-separated), its last pull there, and
# the references of its record that are cached manifests too (newline-separated).
IMAGES = """
SELECT d.digest, m.media_type, m.size, m.cached_at, d.tags, d.at,
  (SELECT group_concat(child, char(10)) FROM child WHERE parent = d.digest)
FROM (
  SELECT digest, group_concat(tag, char(10)) AS tags, max(at) AS at FROM (
    SELECT digest, tag, NULL AS at FROM tag WHERE repo = ?1
    UNION ALL SELECT digest, NULL, at FROM pull WHERE repo = ?1
  ) GROUP BY digest
) d
JOIN manifest m ON m.digest = d.digest
ORDER BY d.digest
"""
# The same columns for cached manifests by digest (an index's children: no tag, no pull).
CHILDREN = """
SELECT m.digest, m.media_type, m.size, m.cached_at, NULL, NULL,
  (SELECT group_concat(child, char(10)) FROM child WHERE parent = m.digest)
FROM manifest m WHERE m.digest IN ({})
"""
# A row of ``IMAGES``: digest, media type, size, cached at, tags, last pull, children.
ImageRow = tuple[str, str, int, float, str | None, float | None, str | None]
# What a deleting run counts references with, built when it first asks (a dry run needs
# none): every reference of every record, and the indexes that find a digest's referrers.
COUNTING = (
    """CREATE TABLE ref AS SELECT r.value AS child FROM manifest m, json_each(m.refs) r""",
    "CREATE INDEX ref_child ON ref (child)",
    "CREATE INDEX child_child ON child (child)",
    "CREATE INDEX tag_digest ON tag (digest)",
    "CREATE INDEX pull_digest ON pull (digest, repo)",
)
# How many repositories hold cached manifest ?1 as an image (tagged or pulled there, or a
# child of one that is, transitively) plus how many records reference it: what the run's
# reference count of a digest starts at (hosted links aside).
REFERENCES = """
WITH RECURSIVE up(d) AS (
  SELECT ?1 UNION SELECT c.parent FROM child c JOIN up ON c.child = up.d
)
SELECT
  (SELECT count(*) FROM (
     SELECT t.repo FROM tag t JOIN up ON t.digest = up.d
     UNION SELECT p.repo FROM pull p JOIN up ON p.digest = up.d
   ) WHERE EXISTS (SELECT 1 FROM manifest WHERE digest = ?1))
  + (SELECT count(*) FROM ref WHERE child = ?1)
"""
# Digests looked up per statement (under SQLite's limit on parameters).
LOOKUP = 500


def looked_up(db: sqlite3.Connection, query: str, digests: Iterable[str]) -> list[Any]:
    """The rows of ``query`` (its ``IN ({})`` filled in) for ``digests``, ``LOOKUP`` at a
    time."""
    found: list[Any] = []
    wanted = list(digests)
    for start in range(0, len(wanted), LOOKUP):
        chunk = wanted[start : start + LOOKUP]
        found += db.execute(query.format(",".join("?" * len(chunk))), chunk)
    return found


class SnapshotRecords(Protocol):
    """The metadata a snapshot is read from: every record in one pass, and batched pulls."""

    def snapshot_rows(self) -> Iterator[SnapshotRows]:
        """Every manifest, tag, last pull and move away from a digest, in batches of rows."""
        ...

    def summary_database(self) -> Path | None:
        """The SQLite file of the store's summary tables (copied), or ``None`` (the rows of
        ``snapshot_rows`` are inserted)."""
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
        # The number of each ``(upstream, repo)`` (the ``repo`` table's).
        self._ids: dict[tuple[str, str], int] = {}
        # Whether ``COUNTING``'s table and indexes are built.
        self._counting = False
        # Read back from whichever worker thread the run continues on, one at a time.
        self._db = sqlite3.connect(name, check_same_thread=False, isolation_level=None)
        self._db.executescript(
            f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-{CACHE_KIB};"
            + SCHEMA
        )
        self._spill(metadata)

    def _spill(self, metadata: SnapshotRecords) -> None:
        db = self._db
        ids = self._ids
        source = metadata.summary_database()
        if source is None:
            db.execute("BEGIN")
            self._insert(metadata)
        else:
            self._copy(source)
            db.execute("BEGIN")
        for index in INDEXES:
            db.execute(index)
        # Pulls not flushed yet replace the stored ones.
        pending = [(*where, when) for where, when in metadata.pending_pulls().items()]
        db.executemany("INSERT OR REPLACE INTO pull VALUES (?, ?, ?)", _numbered(ids, pending, 2))
        db.executemany(
            "INSERT OR IGNORE INTO repo VALUES (?, ?, ?)", ((i, *r) for r, i in ids.items())
        )
        db.execute("COMMIT")

    def _copy(self, source: Path) -> None:
        """Copy the summary tables of database ``source`` (in one read transaction of it)."""
        db = self._db
        db.execute("ATTACH DATABASE ? AS src", (str(source),))
        try:
            db.execute(f"PRAGMA src.cache_size = -{SOURCE_CACHE_KIB}")
            db.execute("BEGIN")
            for statement in COPY:
                db.execute(statement)
            db.execute("COMMIT")
        finally:
            db.execute("DETACH DATABASE src")
        for number, upstream, repo in db.execute("SELECT id, upstream, repo FROM repo"):
            self._ids[(upstream, repo)] = number

    def _insert(self, metadata: SnapshotRecords) -> None:
        """Insert the rows of ``metadata.snapshot_rows``."""
        db = self._db
        ids = self._ids
        for rows in metadata.snapshot_rows():
            db.executemany("INSERT INTO manifest VALUES (?, ?, ?, ?, ?)", _manifests(rows))
            db.executemany("INSERT INTO tag VALUES (?, ?, ?)", _numbered(ids, rows.tags, 3))
            db.executemany("INSERT INTO pull VALUES (?, ?, ?)", _numbered(ids, rows.pulls, 2))
            db.executemany(
                "INSERT INTO untagged VALUES (?, ?, ?)", _numbered(ids, rows.untagged, 2)
            )

    def repositories(self) -> Iterator[tuple[str, str]]:
        """Every ``(upstream, repo)`` with a tag or a last pull, in name order."""
        for _, upstream, repo in self._db.execute(REPOSITORIES):
            yield upstream, repo

    def images(self, upstream: str, repo: str) -> list[ImageRow]:
        """The images of ``repo`` as ``IMAGES`` rows, in digest order."""
        number = self._ids.get((upstream, repo))
        return [] if number is None else self._db.execute(IMAGES, (number,)).fetchall()

    def children(self, digests: Iterable[str]) -> list[ImageRow]:
        """``IMAGES`` rows (without tags or pulls) of those of ``digests`` that are cached."""
        return looked_up(self._db, CHILDREN, digests)

    def untagged(self, upstream: str, repo: str) -> dict[str, float]:
        """When each digest of ``repo`` last lost a tag (the latest move recorded)."""
        query = "SELECT digest, at FROM untagged WHERE repo=? ORDER BY rowid"
        return dict(self._db.execute(query, (self._ids.get((upstream, repo)),)))

    def tags(self, upstream: str, repo: str) -> dict[str, list[str]]:
        """The tags of ``repo`` by the cached manifest they point at."""
        found: dict[str, list[str]] = {}
        query = "SELECT tag, digest FROM tag JOIN manifest USING (digest) WHERE repo=?"
        for tag, digest in self._db.execute(query, (self._ids.get((upstream, repo)),)):
            found.setdefault(digest, []).append(tag)
        return found

    def pulls(self, upstream: str, repo: str) -> dict[str, float]:
        """The last pull of each cached manifest of ``repo``."""
        query = "SELECT digest, at FROM pull JOIN manifest USING (digest) WHERE repo=?"
        return dict(self._db.execute(query, (self._ids.get((upstream, repo)),)))

    def manifests(self, digests: Iterable[str]) -> dict[str, ManifestRecord]:
        """The records of those of ``digests`` that are cached manifests."""
        found: dict[str, ManifestRecord] = {}
        query = "SELECT digest, media_type, size, cached_at, refs FROM manifest"
        query += " WHERE digest IN ({})"
        for digest, media_type, size, cached_at, refs in looked_up(self._db, query, digests):
            found[digest] = ManifestRecord(media_type, size, tuple(json.loads(refs)), cached_at)
        return found

    def manifest(self, digest: str) -> ManifestRecord | None:
        """The record of cached manifest ``digest``, or ``None``."""
        query = "SELECT media_type, size, cached_at, refs FROM manifest WHERE digest=?"
        row = self._db.execute(query, (digest,)).fetchone()
        if row is None:
            return None
        media_type, size, cached_at, refs = row
        return ManifestRecord(media_type, size, tuple(json.loads(refs)), cached_at)

    def references(self, digest: str) -> int:
        """How many images (one per repository holding it) and records refer to ``digest``
        in the snapshot (a deleting run's reference count, before hosted links)."""
        if not self._counting:
            for statement in COUNTING:
                self._db.execute(statement)
            self._counting = True
        return int(self._db.execute(REFERENCES, (digest,)).fetchone()[0])

    def own_pull(self, upstream: str, repo: str, digest: str) -> float | None:
        """The last pull of ``digest`` in ``repo`` when the snapshot was taken."""
        query = "SELECT at FROM pull WHERE repo=? AND digest=?"
        row = self._db.execute(query, (self._ids.get((upstream, repo)), digest)).fetchone()
        return None if row is None else float(row[0])

    def close(self) -> None:
        """Drop the index."""
        self._db.close()
        self._path.unlink(missing_ok=True)


def _numbered(
    ids: dict[tuple[str, str], int], rows: Iterable[tuple[Any, ...]], at: int
) -> Iterator[tuple[Any, ...]]:
    """Those of ``rows`` (``upstream, repo, ...``) whose ``at``-th column is a digest (the
    others name nothing cached), their repository numbered (new ones added to ``ids``)."""
    match = DIGEST.fullmatch
    for row in rows:
        if type(row[at]) is str and match(row[at]):
            where = (row[0], row[1])
            number = ids.get(where)
            if number is None:
                number = ids[where] = len(ids) + 1
            yield (number, *row[2:])


def _manifests(rows: SnapshotRows) -> Iterator[tuple[object, ...]]:
    """The index rows of a batch's manifest records: only those under a digest, with only the
    references that are digests (as ``ManifestRecord.referenced`` reads them), as a JSON
    array (digests need no escaping)."""
    match = DIGEST.fullmatch
    for digest, media_type, size, cached_at, references in rows.manifests:
        if type(digest) is str and match(digest):
            yield digest, media_type, size, cached_at, refs_json(references)
