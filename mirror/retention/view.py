"""A dry run's images read in place from the metadata store's summary tables
(``mirror.db.summary``), in one read transaction of its database: what a ``Snapshot`` gives a
dry run, without copying and indexing the whole cache first. The tables' primary keys are the
indexes a repository's images are read with; last pulls not flushed yet replace the stored
ones, as in a snapshot. A deleting run still takes a snapshot: it counts references and
writes the store while it reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from mirror.db.summary import DIGEST
from mirror.retention.snapshot import ImageRow, Snapshot, SnapshotRecords, looked_up

# ``snapshot.IMAGES`` of a repository ``?1/?2``, over the summary and the batched pulls, but
# for the last column: the manifest's references (``refs``, a JSON array of digests), whose
# cached manifests ``_children`` looks up once a repository.
IMAGES = """
SELECT d.digest, m.media_type, m.size, m.cached_at, d.tags, d.at, m.refs
FROM (
  SELECT digest, group_concat(tag, char(10)) AS tags, max(at) AS at FROM (
    SELECT digest, tag, NULL AS at FROM src.retention_tag WHERE upstream = ?1 AND repo = ?2
    UNION ALL SELECT digest, NULL, at FROM src.retention_pull p
      WHERE upstream = ?1 AND repo = ?2 AND NOT EXISTS (
        SELECT 1 FROM pending q WHERE q.upstream = ?1 AND q.repo = ?2 AND q.digest = p.digest)
    UNION ALL SELECT digest, NULL, at FROM pending WHERE upstream = ?1 AND repo = ?2
  ) GROUP BY digest
) d
JOIN src.retention_manifest m ON m.digest = d.digest
ORDER BY d.digest
"""
# ``snapshot.CHILDREN``: the same columns for cached manifests by digest.
CHILDREN = """
SELECT m.digest, m.media_type, m.size, m.cached_at, NULL, NULL, m.refs
FROM src.retention_manifest m WHERE m.digest IN ({})
"""
# Which of some digests are cached manifests.
CACHED = "SELECT digest FROM src.retention_manifest WHERE digest IN ({})"
# The repository after ``(?1, ?2)`` in name order with a row in ``{}``.
NEXT = "SELECT upstream, repo FROM {} WHERE (upstream, repo) > (?1, ?2) ORDER BY 1, 2 LIMIT 1"
# Where a repository's images are named: tags, stored pulls, batched pulls.
NAMED_IN = ("src.retention_tag", "src.retention_pull", "pending")
# Page cache of the view's reads, KiB (a repository's pages are read once).
CACHE_KIB = 8 * 1024


class ImageSource(Protocol):
    """What a dry run judges from: a ``Snapshot``, or a ``SummaryView``."""

    def repositories(self) -> Iterator[tuple[str, str]]:
        """Every ``(upstream, repo)`` with a tag or a last pull, in name order."""
        ...

    def images(self, upstream: str, repo: str) -> list[ImageRow]:
        """The images of ``repo`` as ``snapshot.IMAGES`` rows, in digest order."""
        ...

    def children(self, digests: Iterable[str]) -> list[ImageRow]:
        """Rows (without tags or pulls) of those of ``digests`` that are cached manifests."""
        ...

    def untagged(self, upstream: str, repo: str) -> dict[str, float]:
        """When each digest of ``repo`` last lost a tag."""
        ...

    def close(self) -> None:
        """Release what the source holds."""
        ...


class SummaryView:
    """The summary tables of database ``source`` as one read transaction sees them, with
    ``pending`` (last pulls not flushed yet, by ``(upstream, repo, digest)``) over them."""

    def __init__(self, source: Path, pending: Mapping[tuple[str, str, str], float]) -> None:
        # Read from whichever worker thread the run continues on, one at a time.
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("ATTACH DATABASE ? AS src", (str(source),))
            self._db.execute(f"PRAGMA src.cache_size = -{CACHE_KIB}")
            self._db.execute(
                "CREATE TABLE pending (upstream TEXT, repo TEXT, digest TEXT, at REAL,"
                " PRIMARY KEY (upstream, repo, digest))"
            )
            rows = [(*key, at) for key, at in pending.items() if DIGEST.fullmatch(key[2])]
            self._db.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?)", rows)
            # The read transaction every later read is part of (begun by its first read).
            self._db.execute("BEGIN")
            self._db.execute("SELECT count(*) FROM src.retention_summary").fetchone()
        except BaseException:
            self._db.close()
            raise

    def repositories(self) -> Iterator[tuple[str, str]]:
        """Every ``(upstream, repo)`` with a tag or a last pull, in name order (found a
        repository at a time along the tables' keys)."""
        after = {table: self._next(table, ("", "")) for table in NAMED_IN}
        while found := [where for where in after.values() if where is not None]:
            where = min(found)
            yield where
            for table, at in after.items():
                if at == where:
                    after[table] = self._next(table, where)

    def _next(self, table: str, after: tuple[str, str]) -> tuple[str, str] | None:
        row = self._db.execute(NEXT.format(table), after).fetchone()
        return None if row is None else (row[0], row[1])

    def images(self, upstream: str, repo: str) -> list[ImageRow]:
        """The images of ``repo`` as ``snapshot.IMAGES`` rows, in digest order."""
        return self._children(self._db.execute(IMAGES, (upstream, repo)).fetchall())

    def children(self, digests: Iterable[str]) -> list[ImageRow]:
        """``IMAGES`` rows (without tags or pulls) of those of ``digests`` that are cached."""
        return self._children(looked_up(self._db, CHILDREN, digests))

    def _children(self, rows: list[tuple[Any, ...]]) -> list[ImageRow]:
        """``rows`` with their references (the last column) replaced by those that are cached
        manifests, newline-separated, in order (``None``: none), as a snapshot's ``child``
        table gives them; every distinct reference looked up once."""
        refs = [_digests(row[6]) for row in rows]
        cached = {d for (d,) in looked_up(self._db, CACHED, {r for listed in refs for r in listed})}
        found: list[ImageRow] = []
        for row, listed in zip(rows, refs, strict=True):
            children = [r for r in listed if r in cached] if cached else ()
            found.append((*row[:6], "\n".join(children) if children else None))
        return found

    def untagged(self, upstream: str, repo: str) -> dict[str, float]:
        """When each digest of ``repo`` last lost a tag (the latest move recorded)."""
        query = (
            "SELECT digest, at FROM src.retention_untagged"
            " WHERE upstream = ? AND repo = ? ORDER BY seq"
        )
        return dict(self._db.execute(query, (upstream, repo)))

    def close(self) -> None:
        """End the read transaction."""
        self._db.close()


def _digests(refs: str) -> list[str]:
    """The digests of a summary's ``refs`` (``summary.refs_json``: digests need no
    escaping)."""
    return refs[2:-2].split('","') if refs != "[]" else []


def dry_run_source(metadata: SnapshotRecords, scratch: Path | None) -> ImageSource:
    """What a dry run reads: the store's summary in place, or a snapshot of a store without
    one (spilled into ``scratch``)."""
    source = metadata.summary_database()
    if source is None:
        return Snapshot(metadata, scratch)
    return SummaryView(source, metadata.pending_pulls())
