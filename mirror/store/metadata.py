"""What the cache knows about its content, in an embedded diskcache (SQLite) database.

Keys are tuples; records are frozen dataclasses. Last-pull times are batched in memory and
flushed every few seconds (and at close), so a crash loses at most one flush interval.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import diskcache

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A passed-through upstream answer (tags list, referrers) kept for stale-if-error."""

    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]
    fetched_at: float


class Metadata:
    """The metadata store. One instance per process, closed explicitly."""

    def __init__(self, directory: Path) -> None:
        self._db = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**62)
        self._pending_pulls: dict[tuple[str, str, str], float] = {}

    # Tags -------------------------------------------------------------------------------

    def tag(self, upstream: str, repo: str, tag: str) -> TagRecord | None:
        """The cached record of ``repo:tag`` at ``upstream``."""
        record = self._db.get(("tag", upstream, repo, tag))
        return record if isinstance(record, TagRecord) else None

    def set_tag(self, upstream: str, repo: str, tag: str, record: TagRecord) -> None:
        """Record where a tag points, and that the repository is cached."""
        self._db.set(("tag", upstream, repo, tag), record)
        self.add_repository(upstream, repo)

    def touch_tag(self, upstream: str, repo: str, tag: str, fetched_at: float) -> None:
        """Note that upstream confirmed the tag unchanged at ``fetched_at``."""
        record = self.tag(upstream, repo, tag)
        if record is not None:
            self._db.set(("tag", upstream, repo, tag), replace(record, fetched_at=fetched_at))

    # Manifests --------------------------------------------------------------------------

    def manifest(self, digest: str) -> ManifestRecord | None:
        """The record of a cached manifest."""
        record = self._db.get(("manifest", digest))
        return record if isinstance(record, ManifestRecord) else None

    def set_manifest(self, digest: str, record: ManifestRecord) -> None:
        self._db.set(("manifest", digest), record)

    def delete_manifest(self, digest: str) -> None:
        self._db.delete(("manifest", digest))

    # Repositories -----------------------------------------------------------------------

    def add_repository(self, upstream: str, repo: str) -> None:
        key = ("repo", upstream, repo)
        if key not in self._db:
            self._db.set(key, True)

    def repositories(self) -> Iterator[tuple[str, str]]:
        """Every cached ``(upstream, repo)``."""
        for key in self._db.iterkeys():
            if isinstance(key, tuple) and key[0] == "repo":
                yield key[1], key[2]

    # Repository links: content a repository is known to reference (authorisation-aware cache)

    def link(self, upstream: str, repo: str, digests: Iterable[str]) -> None:
        """Record that ``repo`` at ``upstream`` references these manifests and blobs."""
        for digest in digests:
            key = ("link", upstream, repo, digest)
            if key not in self._db:
                self._db.set(key, True)

    def linked(self, upstream: str, repo: str, digest: str) -> bool:
        """Whether ``repo`` at ``upstream`` is known to reference ``digest``."""
        return ("link", upstream, repo, digest) in self._db

    def unlink(self, upstream: str, repo: str) -> int:
        """Forget every link of ``repo`` at ``upstream``; returns how many."""
        keys = [
            key
            for key in self._db.iterkeys()
            if isinstance(key, tuple) and key[:3] == ("link", upstream, repo)
        ]
        for key in keys:
            self._db.delete(key)
        return len(keys)

    # Passed-through responses -----------------------------------------------------------

    def response(self, kind: str, upstream: str, repo: str, key: str) -> CachedResponse | None:
        record = self._db.get(("response", kind, upstream, repo, key))
        return record if isinstance(record, CachedResponse) else None

    def set_response(
        self, kind: str, upstream: str, repo: str, key: str, record: CachedResponse
    ) -> None:
        self._db.set(("response", kind, upstream, repo, key), record)

    # Last pull --------------------------------------------------------------------------

    def record_pull(self, upstream: str, repo: str, digest: str, when: float) -> None:
        """Note a pull of image ``digest``; persisted at the next ``flush``."""
        self._pending_pulls[(upstream, repo, digest)] = when

    def last_pull(self, upstream: str, repo: str, digest: str) -> float | None:
        pending = self._pending_pulls.get((upstream, repo, digest))
        if pending is not None:
            return pending
        value = self._db.get(("pull", upstream, repo, digest))
        return float(value) if value is not None else None

    def flush(self) -> int:
        """Write batched last-pull times in one transaction; returns how many."""
        pending, self._pending_pulls = self._pending_pulls, {}
        if pending:
            with self._db.transact():
                for (upstream, repo, digest), when in pending.items():
                    self._db.set(("pull", upstream, repo, digest), when)
        return len(pending)

    def close(self) -> None:
        self.flush()
        self._db.close()
