"""Retention's summary of the metadata: what a snapshot reads of each record (a manifest's
facts, where a tag points, a last pull, a move of a tag away from a digest) as plain SQLite
tables beside diskcache's ``Cache`` table, in the same database file. Each row is written in
the transaction that writes the record it summarises, so the two never disagree, crash or
not; a run reads them with a few ``SELECT``s instead of unpickling every record.

A database without them (written before they existed) or with another ``VERSION`` of them
has them rebuilt from its records when the store opens (``Summary.ensure``).

Only what a snapshot keeps is summarised: rows under a valid digest, a manifest's references
that are digests (as a JSON array), moves away from a digest. The rest names nothing cached.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

# The layout of the tables below; a database holding another is rebuilt.
VERSION = 1
# ``seq``: a move's place in its repository's tag history (oldest first).
SCHEMA = (
    """CREATE TABLE retention_manifest (digest TEXT PRIMARY KEY, media_type TEXT,
       size INTEGER, cached_at REAL, refs TEXT) WITHOUT ROWID""",
    """CREATE TABLE retention_tag (upstream TEXT, repo TEXT, tag TEXT, digest TEXT,
       PRIMARY KEY (upstream, repo, tag)) WITHOUT ROWID""",
    """CREATE TABLE retention_pull (upstream TEXT, repo TEXT, digest TEXT, at REAL,
       PRIMARY KEY (upstream, repo, digest)) WITHOUT ROWID""",
    """CREATE TABLE retention_untagged (upstream TEXT, repo TEXT, seq INTEGER, digest TEXT,
       at REAL, PRIMARY KEY (upstream, repo, seq)) WITHOUT ROWID""",
)
TABLES = ("retention_manifest", "retention_tag", "retention_pull", "retention_untagged")
# Which version of the tables the database holds (absent: none, or being rebuilt).
MARK = "CREATE TABLE IF NOT EXISTS retention_summary (name TEXT PRIMARY KEY, value)"
# What marks the tables out of date (rebuilt when the store next opens): for a writer that
# bypasses the store (a bulk load).
FORGET = "DELETE FROM retention_summary WHERE name = 'version'"
# What ``Digest.parse`` accepts.
DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")

# One record's rows: (digest, media_type, size, cached_at, references).
ManifestRow = tuple[Any, Any, Any, Any, Iterable[Any]]
# A tag move's fields that matter here: (from_digest, at).
MoveRow = tuple[Any, Any]


def is_digest(value: object) -> bool:
    """Whether ``value`` is a digest's text (what a snapshot keeps rows of)."""
    return type(value) is str and DIGEST.fullmatch(value) is not None


def refs_json(references: Iterable[Any]) -> str:
    """The references that are digests, as a JSON array (digests need no escaping)."""
    refs = '","'.join(r for r in references if is_digest(r))
    return f'["{refs}"]' if refs else "[]"


class Summary:
    """The summary tables of one database, written through ``connection()`` (the store's
    connection of the calling thread, inside the transaction writing the record)."""

    def __init__(self, connection: Callable[[], sqlite3.Connection]) -> None:
        self._connection = connection

    def _sql(self, statement: str, *args: Any) -> sqlite3.Cursor:
        return self._connection().execute(statement, args)

    def current(self) -> bool:
        """Whether the database holds this ``VERSION`` of the tables."""
        self._sql(MARK)
        row = self._sql("SELECT value FROM retention_summary WHERE name = 'version'").fetchone()
        return row is not None and row[0] == VERSION

    def rebuild(self, batches: Iterable[SummaryRows]) -> None:
        """Replace the tables with the rows of ``batches`` (inside the caller's transaction,
        which reads the records they summarise), a batch in memory at a time."""
        db = self._connection()
        db.execute(FORGET)
        for table in TABLES:
            db.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in SCHEMA:
            db.execute(statement)
        for rows in batches:
            for table, values in zip(TABLES, rows.tables(), strict=True):
                marks = ", ".join("?" * _WIDTH[table])
                db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", values)
        db.execute("INSERT INTO retention_summary VALUES ('version', ?)", (VERSION,))

    def manifest(self, row: ManifestRow) -> None:
        """Summarise a manifest record (written under ``row[0]``)."""
        for values in _manifest_rows((row,)):
            self._sql("INSERT OR REPLACE INTO retention_manifest VALUES (?, ?, ?, ?, ?)", *values)

    def drop_manifest(self, digest: str) -> None:
        """A manifest record was deleted."""
        self._sql("DELETE FROM retention_manifest WHERE digest = ?", digest)

    def tag(self, upstream: str, repo: str, tag: str, digest: object) -> None:
        """Tag ``repo:tag`` points at ``digest`` now (``None``: it was deleted)."""
        if is_digest(digest):
            self._sql(
                "INSERT OR REPLACE INTO retention_tag VALUES (?, ?, ?, ?)",
                upstream,
                repo,
                tag,
                digest,
            )
        else:
            self._sql(
                "DELETE FROM retention_tag WHERE upstream = ? AND repo = ? AND tag = ?",
                upstream,
                repo,
                tag,
            )

    def pulls(self, pulls: Iterable[tuple[str, str, str, float]]) -> None:
        """Last pulls written: ``(upstream, repo, digest, at)``."""
        kept = [row for row in pulls if is_digest(row[2])]
        self._connection().executemany(
            "INSERT OR REPLACE INTO retention_pull VALUES (?, ?, ?, ?)", kept
        )

    def drop_pull(self, upstream: str, repo: str, digest: str) -> None:
        """A last pull was deleted."""
        self._sql(
            "DELETE FROM retention_pull WHERE upstream = ? AND repo = ? AND digest = ?",
            upstream,
            repo,
            digest,
        )

    def history(self, upstream: str, repo: str, moves: Iterable[MoveRow]) -> None:
        """The tag history of ``repo`` is now ``moves`` (oldest first; empty: deleted)."""
        self._sql("DELETE FROM retention_untagged WHERE upstream = ? AND repo = ?", upstream, repo)
        self._connection().executemany(
            "INSERT INTO retention_untagged VALUES (?, ?, ?, ?, ?)",
            untagged_rows(upstream, repo, moves),
        )

    def append_move(self, upstream: str, repo: str, seq: int, move: MoveRow) -> None:
        """A move was added at place ``seq`` of ``repo``'s history (the rest unchanged)."""
        if is_digest(move[0]):
            self._sql(
                "INSERT OR REPLACE INTO retention_untagged VALUES (?, ?, ?, ?, ?)",
                upstream,
                repo,
                seq,
                move[0],
                move[1],
            )

    def forget_upstream(self, upstream: str) -> None:
        """Every tag, last pull and tag move of ``upstream`` was deleted."""
        for table in TABLES[1:]:
            self._sql(f"DELETE FROM {table} WHERE upstream = ?", upstream)


class SummaryRows:
    """A batch of a rebuild's rows, as the tables take them."""

    def __init__(self) -> None:
        self.manifests: list[tuple[Any, ...]] = []
        self.tags: list[tuple[str, str, str, str]] = []
        self.pulls: list[tuple[str, str, str, float]] = []
        self.untagged: list[tuple[str, str, int, str, Any]] = []

    def manifest(self, row: ManifestRow) -> None:
        """A manifest record's row (none if it is not under a digest)."""
        self.manifests += _manifest_rows((row,))

    def tag(self, upstream: str, repo: str, tag: str, digest: object) -> None:
        """A tag record's row (none if it names no digest)."""
        if is_digest(digest):
            self.tags.append((upstream, repo, tag, digest))  # type: ignore[arg-type]

    def pull(self, upstream: str, repo: str, digest: object, at: float) -> None:
        """A last pull's row (none if it names no digest)."""
        if is_digest(digest):
            self.pulls.append((upstream, repo, digest, at))  # type: ignore[arg-type]

    def history(self, upstream: str, repo: str, moves: Iterable[MoveRow]) -> None:
        """A tag history's rows."""
        self.untagged += untagged_rows(upstream, repo, moves)

    def tables(self) -> tuple[list[Any], ...]:
        """The rows of each of ``TABLES``."""
        return self.manifests, self.tags, self.pulls, self.untagged


def untagged_rows(
    upstream: str, repo: str, moves: Iterable[MoveRow]
) -> list[tuple[str, str, int, str, Any]]:
    """The rows of the moves away from a digest among ``moves`` (by place in the history)."""
    return [
        (upstream, repo, seq, move[0], move[1])
        for seq, move in enumerate(moves)
        if is_digest(move[0])
    ]


def _manifest_rows(manifests: Iterable[ManifestRow]) -> list[tuple[Any, ...]]:
    return [
        (digest, media_type, size, cached_at, refs_json(references))
        for digest, media_type, size, cached_at, references in manifests
        if is_digest(digest)
    ]


_WIDTH = {"retention_manifest": 5, "retention_tag": 4, "retention_pull": 4, "retention_untagged": 5}
