"""What the cache knows about its content, in an embedded diskcache (SQLite) database.

Keys are tuples; records are frozen dataclasses. Last-pull times are batched in memory and
flushed every few seconds (and at close), so a crash loses at most one flush interval.
"""

from __future__ import annotations

import json
import logging
import pickle
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import MODE_PICKLE, MODE_RAW

from mirror.db.pickled import (
    FieldList,
    classes,
    disk_naming,
    field_lists,
    loads_classes,
    loads_fields,
    stored_in,
)
from mirror.db.roles import (
    CachedResponses,
    Eviction,
    Links,
    Manifests,
    MetadataUnavailable,
    Pulls,
    Repositories,
    SnapshotRows,
    TagHistory,
    Tags,
    Upstreams,
)
from mirror.db.summary import Summary, SummaryRows
from mirror.errors import RegistryError
from mirror.lru import Lru
from mirror.oci.digest import Digest

log = logging.getLogger(__name__)

# What a write raises when the disk refuses it: sqlite's ``OperationalError`` ("database or
# disk is full", "disk I/O error", "database is locked"), or the ``OSError`` of a large value
# that diskcache keeps in a file of its own, or ``MetadataUnavailable`` from the shared
# PostgreSQL store. Nothing of the failed write is kept.
WRITE_FAILED: tuple[type[Exception], ...] = (
    sqlite3.OperationalError,
    OSError,
    MetadataUnavailable,
)


@dataclass(frozen=True, slots=True)
class TagRecord:
    """Where a tag pointed when last checked with upstream."""

    digest: str
    media_type: str
    size: int
    fetched_at: float


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """A cached manifest: its media type, size and the digests it references."""

    media_type: str
    size: int
    references: tuple[str, ...]
    cached_at: float

    def referenced(self) -> tuple[Digest, ...]:
        """The digests this manifest references; a reference that is not a valid digest is
        left out (no request can name it, and no cached object has it)."""
        found = []
        for reference in self.references:
            try:
                found.append(Digest.parse(reference))
            except RegistryError:
                continue
        return tuple(found)


@dataclass(frozen=True, slots=True)
class TagMove:
    """A tag of a repository started pointing at ``to_digest`` (``None``: it was removed)."""

    tag: str
    from_digest: str | None
    to_digest: str | None
    at: float


@dataclass(slots=True)
class RepositoryRecords:
    """What some repositories hold, by ``(upstream, repo)``: their links, the digests their
    tags point at (as stored), and their deletion notes (digest: when it was deleted)."""

    links: dict[tuple[str, str], set[Digest]] = field(default_factory=dict)
    tags: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    deleted: dict[tuple[str, str], dict[Digest, float]] = field(default_factory=dict)


# Tag moves kept per repository (moves of evicted images are pruned before this bites).
TAG_HISTORY_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A passed-through upstream answer (tags list, referrers) kept for stale-if-error."""

    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]
    fetched_at: float


# Pickles name classes by module and name: the records keep the names they were first stored
# under (``mirror.store.metadata``), so a data directory reads the same across moves of code.
_DISK = disk_naming(
    stored_in("mirror.store.metadata", TagRecord, ManifestRecord, TagMove, CachedResponse)
)


class Metadata(
    Tags, Manifests, Repositories, Links, TagHistory, CachedResponses, Pulls, Eviction, Upstreams
):
    """The metadata store, playing every role of ``mirror.db.roles``. One instance per process,
    closed explicitly.

    Records keep digests as the strings they were stored as; the methods take and give
    ``Digest`` values.

    Tag and manifest records are also kept in a bounded memory memo: every write goes through
    this object (offline commands take the data directory's lock exclusively), so the memo
    stays exact, and a warm manifest request costs no database lookup.
    """

    def __init__(self, directory: Path, *, memo_size: int = 50_000) -> None:
        # Where the database lives (readiness checks that it is still there).
        self.directory = directory
        self._db = diskcache.Cache(
            str(directory), disk=_DISK, eviction_policy="none", size_limit=2**62
        )
        cache: Any = self._db
        # Retention's tables, written through the store's connection of the calling thread
        # (so inside the transaction that writes the records they summarise).
        self._summary = Summary(lambda: cache._con)
        self._pending_pulls: dict[tuple[str, str, str], float] = {}
        self._tags: Lru[tuple[str, str, str], TagRecord] = Lru(memo_size)
        self._manifests: Lru[Digest, ManifestRecord] = Lru(memo_size)
        self._ensure_summary()

    def _ensure_summary(self) -> None:
        """Build retention's summary from the records when the database has none (written
        before there was one) or another version of it, in one transaction."""
        if self._summary.current():
            return
        with self._db.transact(retry=True):
            if not self._summary.current():
                if len(self._db):  # a new, empty store has nothing to build (nor to say)
                    log.info("building the retention summary of %s", self.directory)
                self._summary.rebuild(self._summary_batches())

    # Tags -------------------------------------------------------------------------------

    def tag(self, upstream: str, repo: str, tag: str) -> TagRecord | None:
        """The cached record of ``repo:tag`` at ``upstream``."""
        memo = self._tags.get((upstream, repo, tag))
        if memo is not None:
            return memo
        record = self._db.get(("tag", upstream, repo, tag))
        if not isinstance(record, TagRecord):
            return None
        self._tags.put((upstream, repo, tag), record)
        return record

    def set_tag(self, upstream: str, repo: str, tag: str, record: TagRecord) -> None:
        """Record where a tag points, and that the repository is cached."""
        old = self.tag(upstream, repo, tag)
        with self._db.transact():
            self._db.set(("tag", upstream, repo, tag), record)
            if old is None or old.digest != record.digest:
                self._summary.tag(upstream, repo, tag, record.digest)
                previous = old.digest if old else None
                move = TagMove(tag, previous, record.digest, record.fetched_at)
                self._record_move(upstream, repo, move)
        self._tags.put((upstream, repo, tag), record)
        self.add_repository(upstream, repo)

    def delete_tag(self, upstream: str, repo: str, tag: str, at: float) -> TagRecord | None:
        """Remove tag ``repo:tag`` (its move is recorded); the record it had, or ``None``."""
        old = self.tag(upstream, repo, tag)
        if old is None:
            return None
        with self._db.transact():
            self._db.delete(("tag", upstream, repo, tag))
            self._summary.tag(upstream, repo, tag, None)
            self._record_move(upstream, repo, TagMove(tag, old.digest, None, at))
        self._tags.drop((upstream, repo, tag))
        return old

    def touch_tag(self, upstream: str, repo: str, tag: str, fetched_at: float) -> None:
        """Note that upstream confirmed the tag unchanged at ``fetched_at``."""
        record = self.tag(upstream, repo, tag)
        if record is not None:
            touched = replace(record, fetched_at=fetched_at)
            self._db.set(("tag", upstream, repo, tag), touched)
            self._tags.put((upstream, repo, tag), touched)

    # Manifests --------------------------------------------------------------------------

    def manifest(self, digest: Digest) -> ManifestRecord | None:
        """The record of a cached manifest."""
        memo = self._manifests.get(digest)
        if memo is not None:
            return memo
        record = self._db.get(("manifest", str(digest)))
        if not isinstance(record, ManifestRecord):
            return None
        self._manifests.put(digest, record)
        return record

    def set_manifest(self, digest: Digest, record: ManifestRecord) -> None:
        """Record a cached manifest."""
        summarised = (
            str(digest),
            record.media_type,
            record.size,
            record.cached_at,
            record.references,
        )
        with self._db.transact():
            self._db.set(("manifest", str(digest)), record)
            self._summary.manifest(summarised)
        self._manifests.put(digest, record)

    def delete_manifest(self, digest: Digest) -> None:
        """Forget a manifest (nothing happens if it is not cached)."""
        self._manifests.drop(digest)
        with self._db.transact():
            self._db.delete(("manifest", str(digest)))
            self._summary.drop_manifest(str(digest))

    # Repositories -----------------------------------------------------------------------

    def add_repository(self, upstream: str, repo: str) -> None:
        """Note that the repository is cached."""
        key = ("repo", upstream, repo)
        if key not in self._db:
            self._db.set(key, True)

    def repositories(self) -> Iterator[tuple[str, str]]:
        """Every cached ``(upstream, repo)``."""
        for key in iter(self._db):
            if isinstance(key, tuple) and key[0] == "repo":
                yield key[1], key[2]

    # Repository links: content a repository is known to reference (authorisation-aware cache)

    def link(self, upstream: str, repo: str, digests: Iterable[Digest]) -> None:
        """Record that ``repo`` at ``upstream`` references these manifests and blobs."""
        for digest in digests:
            key = ("link", upstream, repo, str(digest))
            if key not in self._db:
                self._db.set(key, True)

    def linked(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Whether ``repo`` at ``upstream`` is known to reference ``digest``."""
        return ("link", upstream, repo, str(digest)) in self._db

    def links_under(self, prefix: str) -> Iterator[tuple[str, str, Digest]]:
        """Every ``(upstream, repo, digest)`` link of an upstream key starting with ``prefix``
        (one pass over the database)."""
        for key in self._keys("link"):
            if len(key) == 4 and key[1].startswith(prefix):
                digest = _digest_or_none(key[3])
                if digest is not None:
                    yield key[1], key[2], digest

    def drop_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Forget that ``repo`` at ``upstream`` references ``digest``; whether it did."""
        key = ("link", upstream, repo, str(digest))
        return bool(self._db.delete(key))

    def bury(self, upstream: str, repo: str, digest: Digest, at: float) -> None:
        """Note that a client (or a policy) deleted ``digest`` from ``repo`` at ``at``: the
        collector reclaims what only it referred to there, then forgets the note."""
        self._db.set(("deleted", upstream, repo, str(digest)), at)

    def unbury(self, upstream: str, repo: str, digest: Digest) -> None:
        """Forget the deletion note of ``digest`` in ``repo``."""
        self._db.delete(("deleted", upstream, repo, str(digest)))

    def repository_records(self, prefix: str) -> RepositoryRecords:
        """The links, tags and deletion notes of every upstream key starting with ``prefix``,
        read in one pass (the hosted repositories', for their garbage collection)."""
        found = RepositoryRecords()
        for key in iter(self._db):
            if not isinstance(key, tuple) or len(key) != 4 or not isinstance(key[1], str):
                continue
            if key[0] not in ("link", "tag", "deleted") or not key[1].startswith(prefix):
                continue
            where = (key[1], key[2])
            if key[0] == "link":
                found.links.setdefault(where, set()).add(Digest.parse(key[3]))
            elif key[0] == "deleted":
                found.deleted.setdefault(where, {})[Digest.parse(key[3])] = float(
                    self._db.get(key, 0.0)
                )
            elif isinstance(record := self.tag(key[1], key[2], key[3]), TagRecord):
                found.tags.setdefault(where, set()).add(record.digest)
        return found

    def unlink(self, upstream: str, repo: str) -> int:
        """Forget every link of ``repo`` at ``upstream``; returns how many."""
        keys = [
            key
            for key in iter(self._db)
            if isinstance(key, tuple) and key[:3] == ("link", upstream, repo)
        ]
        for key in keys:
            self._db.delete(key)
        return len(keys)

    # Retention: tag history, enumeration and eviction ----------------------------------

    def _record_move(self, upstream: str, repo: str, move: TagMove) -> None:
        key = ("tag-history", upstream, repo)
        with self._db.transact():
            history = self.tag_history(upstream, repo)
            kept = (*history, move)[-TAG_HISTORY_LIMIT:]
            self._db.set(key, kept)
            if len(kept) > len(history):
                self._summary.append_move(upstream, repo, len(history), (move.from_digest, move.at))
            else:
                self._summary.history(upstream, repo, _moves(kept))

    def tag_history(self, upstream: str, repo: str) -> tuple[TagMove, ...]:
        """Every recorded move of a tag of ``repo``, oldest first."""
        history = self._db.get(("tag-history", upstream, repo))
        return history if isinstance(history, tuple) else ()

    def tags(self) -> Iterator[tuple[str, str, str, TagRecord]]:
        """Every cached ``(upstream, repo, tag, record)``."""
        for key in self._keys("tag"):
            record = self._db.get(key)
            if isinstance(record, TagRecord):
                yield key[1], key[2], key[3], record

    def manifests(self) -> Iterator[tuple[Digest, ManifestRecord]]:
        """Every cached ``(digest, record)``."""
        for key in self._keys("manifest"):
            record = self._db.get(key)
            if isinstance(record, ManifestRecord):
                yield Digest.parse(key[1]), record

    def pulls(self) -> dict[tuple[str, str, Digest], float]:
        """Last pull of every ``(upstream, repo, digest)``, batched ones included."""
        found: dict[tuple[str, str, str], float] = {}
        for key in self._keys("pull"):
            value = self._db.get(key)
            if value is not None:
                found[(key[1], key[2], key[3])] = float(value)
        found.update(self._pending_pulls)
        return {(h, r, Digest.parse(d)): when for (h, r, d), when in found.items()}

    def evict_image(
        self,
        upstream: str,
        repo: str,
        digest: Digest,
        tags: Iterable[str] | None = None,
        *,
        history: bool = True,
    ) -> tuple[str, ...]:
        """Forget image ``digest`` in ``repo``: its tags there, its last pull and (unless
        ``history`` is false: ``prune_history`` later) its tag history; returns the tags
        removed. The manifest record is the caller's to delete.

        ``tags`` names the tags that may point at it (from a retention snapshot), sparing a
        scan of the whole database; ``None`` scans.
        """
        if tags is None:
            keys = list(self._keys("tag", upstream, repo))
        else:
            keys = [("tag", upstream, repo, tag) for tag in tags]
        stored = str(digest)
        with self._db.transact():
            removed = self._untag(upstream, repo, stored, keys)
            self._pending_pulls.pop((upstream, repo, stored), None)
            self._db.delete(("pull", upstream, repo, stored))
            self._summary.drop_pull(upstream, repo, stored)
            if history:
                self.prune_history(upstream, repo, (digest,))
        return removed

    def prune_history(self, upstream: str, repo: str, digests: Iterable[Digest]) -> None:
        """Forget the moves of ``repo``'s tags to or from ``digests`` (evicted images'): the
        history is read and written once, however many."""
        gone = {str(digest) for digest in digests}
        with self._db.transact():
            history = self.tag_history(upstream, repo)
            kept = tuple(
                m for m in history if m.from_digest not in gone and m.to_digest not in gone
            )
            if kept != history:
                self._db.set(("tag-history", upstream, repo), kept)
                self._summary.history(upstream, repo, _moves(kept))

    def _untag(
        self, upstream: str, repo: str, stored: str, keys: Iterable[tuple[str, ...]]
    ) -> tuple[str, ...]:
        """Delete those tag records of ``keys`` that point at ``stored``; their tags."""
        removed: list[str] = []
        for key in keys:
            record = self._db.get(key)
            if isinstance(record, TagRecord) and record.digest == stored:
                self._db.delete(key)
                self._summary.tag(upstream, repo, key[3], None)
                self._tags.drop((upstream, repo, key[3]))
                removed.append(key[3])
        return tuple(sorted(removed))

    def forget_empty_repositories(self, candidates: Iterable[tuple[str, str]]) -> set[str]:
        """Forget those of ``candidates`` (``(upstream, repo)``) with no tag or last pull left,
        so they leave the catalog; one pass over the database. Returns ``HOST/REPO`` names."""
        wanted = set(candidates)
        busy = {key[:2] for key in self._pending_pulls if key[:2] in wanted}
        responses: list[tuple[str, ...]] = []
        for key in iter(self._db):
            if not isinstance(key, tuple) or len(key) < 3:
                continue
            if key[0] in ("tag", "pull") and (key[1], key[2]) in wanted:
                busy.add((key[1], key[2]))
            elif key[0] == "response" and len(key) >= 4 and (key[2], key[3]) in wanted:
                responses.append(key)
        empty = wanted - busy
        with self._db.transact():
            for upstream, repo in empty:
                self._db.delete(("repo", upstream, repo))
                self._db.delete(("tag-history", upstream, repo))
                self._summary.history(upstream, repo, ())
            for key in responses:
                if (key[2], key[3]) in empty:
                    self._db.delete(key)
        return {f"{upstream}/{repo}" for upstream, repo in empty}

    def forget_upstream(self, upstream: str) -> int:
        """Forget everything kept under ``upstream`` (a deleted rule's key): its repositories'
        links, tags, tag history, last pulls, cached responses and catalog entries; returns
        how many records. Records of any other key (another tenancy's, even for the same URL
        and repository) stay. Manifests and blobs are shared by digest: retention collects
        what no repository references any more."""
        per_repo = ("repo", "link", "tag", "tag-history", "pull", "deleted")
        keys = [
            key
            for key in iter(self._db)
            if isinstance(key, tuple)
            and len(key) >= 3
            and (
                (key[0] in per_repo and key[1] == upstream)
                or (key[0] == "response" and len(key) >= 4 and key[2] == upstream)
            )
        ]
        with self._db.transact():
            for key in keys:
                self._db.delete(key)
                if key[0] == "tag" and len(key) == 4:
                    self._tags.drop((key[1], key[2], key[3]))
            self._summary.forget_upstream(upstream)
        for pending in [k for k in self._pending_pulls if k[0] == upstream]:
            del self._pending_pulls[pending]
        return len(keys)

    def records(
        self, kinds: Iterable[str], batch: int = 20_000
    ) -> Iterator[tuple[tuple[str, ...], object]]:
        """Every ``(key, record)`` whose key kind is one of ``kinds``, read in one pass over
        the database in short read transactions (retention's snapshot; batched last pulls are
        not included). Rows are decoded here rather than through diskcache's ``Disk``: the
        same pickles, read without its per-row overhead."""
        wanted = set(kinds)
        cache: Any = self._db
        disk = cache._disk
        found = classes(_DISK.NAMES)
        select = (
            "SELECT rowid, key, raw, mode, filename, value FROM Cache"
            " WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )
        last = 0
        while rows := cache._sql(select, (last, batch)).fetchall():
            last = rows[-1][0]
            for _, raw_key, raw, mode, filename, value in rows:
                key = raw_key if raw else pickle.loads(raw_key)
                if not (isinstance(key, tuple) and key and key[0] in wanted):
                    continue
                if mode == MODE_RAW:
                    yield key, value
                elif mode == MODE_PICKLE and value is not None:
                    yield key, loads_classes(value, found)
                else:
                    yield key, disk.fetch(mode, filename, value, False)

    def snapshot_rows(self, batch: int = 5_000) -> Iterator[SnapshotRows]:
        """Every manifest, tag, last pull and move of a tag away from a digest (those under a
        digest) as plain rows, ``batch`` at a time, read from retention's summary tables in
        one read transaction (batched last pulls are not included). The pass reads through a
        connection of its own with a small page cache and no memory map: the store's would
        keep a large database's pages in the process once the pass had touched them."""
        db = self._pass_connection()
        try:
            db.execute("BEGIN")
            for query, kind in _SUMMARY_ROWS:
                cursor = db.execute(query)
                while found := cursor.fetchmany(batch):
                    if kind == "manifests":
                        found = [(*row[:4], tuple(json.loads(row[4]))) for row in found]
                    yield SnapshotRows(**{kind: found})
            db.execute("COMMIT")
        finally:
            db.close()

    def summary_database(self) -> Path | None:
        """The SQLite file holding retention's summary tables (``mirror.db.summary``), in
        step with every record: what a snapshot copies without decoding a record."""
        return self.directory / str(diskcache.core.DBNAME)

    def _pass_connection(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.directory / diskcache.core.DBNAME), isolation_level=None)
        db.execute("PRAGMA mmap_size = 0")
        db.execute(f"PRAGMA cache_size = -{PASS_CACHE_KIB}")
        return db

    def _summary_batches(self, batch: int = 5_000) -> Iterator[SummaryRows]:
        """Retention's summary of every record, ``batch`` database rows at a time, read
        through the store's connection (inside the rebuild's transaction). Records are read
        as their fields' values (``loads_fields``), never built."""
        cache: Any = self._db
        rows = _RowReader(cache._disk)
        select = (
            "SELECT rowid, key, raw, mode, filename, value FROM Cache"
            " WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )
        last = 0
        while found := cache._sql(select, (last, batch)).fetchall():
            last = found[-1][0]
            out = SummaryRows()
            for _, raw_key, raw, mode, filename, value in found:
                key = raw_key if raw else pickle.loads(raw_key)
                if isinstance(key, tuple) and key and key[0] in _SNAPSHOT_KINDS:
                    rows.add(out, key, mode, filename, value)
            yield out

    def pending_pulls(self) -> dict[tuple[str, str, str], float]:
        """Last pulls batched in memory and not flushed yet, by ``(upstream, repo, digest)``."""
        return dict(self._pending_pulls)

    def _keys(self, kind: str, *prefix: str | None) -> Iterator[tuple[str, ...]]:
        """Keys of ``kind`` whose next parts equal ``prefix`` (``None`` matches anything)."""
        for key in iter(self._db):
            if not isinstance(key, tuple) or key[0] != kind or len(key) <= len(prefix):
                continue
            if all(p is None or key[i + 1] == p for i, p in enumerate(prefix)):
                yield key

    # Passed-through responses -----------------------------------------------------------

    def response(self, kind: str, upstream: str, repo: str, key: str) -> CachedResponse | None:
        """The kept answer, or ``None``."""
        record = self._db.get(("response", kind, upstream, repo, key))
        return record if isinstance(record, CachedResponse) else None

    def set_response(
        self, kind: str, upstream: str, repo: str, key: str, record: CachedResponse
    ) -> None:
        """Keep an answer, replacing the one kept before."""
        self._db.set(("response", kind, upstream, repo, key), record)

    # Last pull --------------------------------------------------------------------------

    def record_pull(self, upstream: str, repo: str, digest: Digest, when: float) -> None:
        """Note a pull of image ``digest``; persisted at the next ``flush``."""
        self._pending_pulls[(upstream, repo, str(digest))] = when

    def last_pull(self, upstream: str, repo: str, digest: Digest) -> float | None:
        """When image ``digest`` in ``repo`` was last pulled, or ``None``."""
        pending = self._pending_pulls.get((upstream, repo, str(digest)))
        if pending is not None:
            return pending
        value = self._db.get(("pull", upstream, repo, str(digest)))
        return float(value) if value is not None else None

    def flush(self) -> int:
        """Write batched last-pull times in one transaction; returns how many. When the write
        fails (``WRITE_FAILED``, e.g. a full disk) the batch stays pending for the next try,
        so retention still sees the pulls, and the error is raised."""
        pending, self._pending_pulls = self._pending_pulls, {}
        try:
            if pending:
                with self._db.transact():
                    for (upstream, repo, digest), when in pending.items():
                        self._db.set(("pull", upstream, repo, digest), when)
                    self._summary.pulls((*key, when) for key, when in pending.items())
        except BaseException:
            # Pulls noted since the batch was taken are newer: they win.
            self._pending_pulls = {**pending, **self._pending_pulls}
            raise
        return len(pending)

    def close(self) -> None:
        """Flush batched last pulls and close the database; a flush the disk refuses is
        logged with what it loses (no later try is coming), and the database still closes."""
        try:
            self.flush()
        except WRITE_FAILED as exc:
            lost = len(self._pending_pulls)
            log.warning("could not keep %d last-pull times at close: %s", lost, exc)
        finally:
            self._db.close()


# Page cache of a snapshot's pass over the database, KiB (each page is read once).
PASS_CACHE_KIB = 2048
# The record kinds retention's summary is made of.
_SNAPSHOT_KINDS = frozenset(("manifest", "tag", "pull", "tag-history"))
# ``snapshot_rows``'s reads of the summary, and which rows each gives.
_SUMMARY_ROWS = (
    ("SELECT digest, media_type, size, cached_at, refs FROM retention_manifest", "manifests"),
    ("SELECT upstream, repo, tag, digest FROM retention_tag", "tags"),
    ("SELECT upstream, repo, digest, at FROM retention_pull", "pulls"),
    ("SELECT upstream, repo, digest, at FROM retention_untagged", "untagged"),
)
# Records read as their fields (``FieldList``s) for snapshots.
_FIELDS = field_lists(_DISK.NAMES)


def _position(cls: type, name: str) -> int:
    """Where field ``name`` of record class ``cls`` is in its pickled state."""
    return [f.name for f in dataclass_fields(cls)].index(name)


class _RowReader:
    """Turns stored records into a snapshot's rows (``Metadata.snapshot_rows``)."""

    def __init__(self, disk: Any) -> None:
        self._disk = disk
        self._m = [
            _position(ManifestRecord, n) for n in ("media_type", "size", "cached_at", "references")
        ]
        self._t = _position(TagRecord, "digest")
        self._from, self._at = _position(TagMove, "from_digest"), _position(TagMove, "at")

    def _value(self, mode: int, filename: str | None, value: Any) -> Any:
        if mode == MODE_RAW:
            return value
        if mode == MODE_PICKLE and value is not None:
            return loads_fields(value, _FIELDS)
        if mode == MODE_PICKLE:
            with open(f"{self._disk._directory}/{filename}", "rb") as reader:
                return loads_fields(reader.read(), _FIELDS)
        return self._disk.fetch(mode, filename, value, False)

    def add(self, out: SummaryRows, key: tuple[Any, ...], mode: int, name: Any, raw: Any) -> None:
        """Add the summary rows of record ``key`` (none for a malformed one)."""
        kind = key[0]
        if kind == "pull":
            value = raw if mode == MODE_RAW else self._value(mode, name, raw)
            if len(key) == 4 and value is not None:
                out.pull(key[1], key[2], key[3], float(value))
            return
        value = self._value(mode, name, raw)
        if kind == "manifest" and len(key) == 2 and _is(value, ManifestRecord):
            media_type, size, cached_at, references = (value[i] for i in self._m)
            out.manifest((key[1], media_type, size, cached_at, references))
        elif kind == "tag" and len(key) == 4 and _is(value, TagRecord):
            out.tag(key[1], key[2], key[3], value[self._t])
        elif kind == "tag-history" and len(key) == 3 and isinstance(value, tuple):
            # Every move keeps its place (``seq``), a malformed one naming no digest.
            out.history(
                key[1],
                key[2],
                [
                    (move[self._from], move[self._at]) if _is(move, TagMove) else (None, None)
                    for move in value
                ],
            )


def _moves(history: Iterable[TagMove]) -> list[tuple[str | None, float]]:
    """The fields of ``history``'s moves that the summary keeps, in order."""
    return [(move.from_digest, move.at) for move in history]


def _is(value: object, record: type) -> bool:
    """Whether ``value`` is the fields of a ``record`` (``isinstance`` of the record built)."""
    return isinstance(value, FieldList) and value.record is record


def _digest_or_none(text: str) -> Digest | None:
    try:
        return Digest.parse(text)
    except RegistryError:
        return None
