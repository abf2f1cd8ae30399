"""The metadata store's roles: each service declares the slice of the store it uses.

One database plays every role: the embedded diskcache one (``mirror.db.metadata.Metadata``,
the single-node default) or the shared PostgreSQL one of a regional tier
(``mirror.db.postgres.metadata.PostgresMetadata``); both are a ``MetadataStore``. A role is a
small protocol named for what it holds, so a reader sees from a constructor what a service
touches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mirror.db.metadata import (
        CachedResponse,
        ManifestRecord,
        RepositoryRecords,
        TagMove,
        TagRecord,
    )
    from mirror.oci.digest import Digest


class MetadataUnavailable(Exception):
    """A shared metadata database refused or could not take a call (connection lost, server
    gone, statement failed): one of ``mirror.db.metadata.WRITE_FAILED``."""


class Tags(Protocol):
    """Where each cached tag points, as last checked with upstream."""

    def tag(self, upstream: str, repo: str, tag: str) -> TagRecord | None:
        """The cached record of ``repo:tag`` at ``upstream``, or ``None``."""
        ...

    def set_tag(self, upstream: str, repo: str, tag: str, record: TagRecord) -> None:
        """Record where a tag points (a move is added to the tag history)."""
        ...

    def touch_tag(self, upstream: str, repo: str, tag: str, fetched_at: float) -> None:
        """Note that upstream confirmed the tag unchanged at ``fetched_at``."""
        ...

    def tags(self) -> Iterator[tuple[str, str, str, TagRecord]]:
        """Every cached ``(upstream, repo, tag, record)``."""
        ...


class Manifests(Protocol):
    """The cached manifests: media type, size and what each references."""

    def manifest(self, digest: Digest) -> ManifestRecord | None:
        """The record of a cached manifest, or ``None``."""
        ...

    def set_manifest(self, digest: Digest, record: ManifestRecord) -> None:
        """Record a cached manifest."""
        ...

    def delete_manifest(self, digest: Digest) -> None:
        """Forget a manifest (nothing happens if it is not cached)."""
        ...

    def manifests(self) -> Iterator[tuple[Digest, ManifestRecord]]:
        """Every cached ``(digest, record)``."""
        ...


class Repositories(Protocol):
    """The catalog: every cached ``(upstream, repo)``."""

    def add_repository(self, upstream: str, repo: str) -> None:
        """Note that the repository is cached."""
        ...

    def repositories(self) -> Iterator[tuple[str, str]]:
        """Every cached ``(upstream, repo)``."""
        ...


class Links(Protocol):
    """Content a repository is known to reference (the authorisation-aware cache)."""

    def link(self, upstream: str, repo: str, digests: Iterable[Digest]) -> None:
        """Record that ``repo`` at ``upstream`` references these manifests and blobs."""
        ...

    def linked(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Whether ``repo`` at ``upstream`` is known to reference ``digest``."""
        ...

    def links_under(self, prefix: str) -> Iterator[tuple[str, str, Digest]]:
        """Every link ``(upstream, repo, digest)`` of an upstream key starting with ``prefix``."""
        ...

    def unlink(self, upstream: str, repo: str) -> int:
        """Forget every link of ``repo`` at ``upstream``; returns how many."""
        ...


class TagHistory(Protocol):
    """The moves of each repository's tags (retention's "not tagged since")."""

    def tag_history(self, upstream: str, repo: str) -> tuple[TagMove, ...]:
        """Every recorded move of a tag of ``repo``, oldest first."""
        ...


class CachedResponses(Protocol):
    """Passed-through upstream answers (tags lists, referrers) kept for stale-if-error."""

    def response(self, kind: str, upstream: str, repo: str, key: str) -> CachedResponse | None:
        """The kept answer, or ``None``."""
        ...

    def set_response(
        self, kind: str, upstream: str, repo: str, key: str, record: CachedResponse
    ) -> None:
        """Keep an answer, replacing the one kept before."""
        ...


class Pulls(Protocol):
    """When each image was last pulled (batched in memory, persisted by ``flush``)."""

    def record_pull(self, upstream: str, repo: str, digest: Digest, when: float) -> None:
        """Note a pull of image ``digest``; persisted at the next ``flush``."""
        ...

    def last_pull(self, upstream: str, repo: str, digest: Digest) -> float | None:
        """When image ``digest`` in ``repo`` was last pulled, or ``None``."""
        ...

    def pulls(self) -> dict[tuple[str, str, Digest], float]:
        """Last pull of every ``(upstream, repo, digest)``, batched ones included."""
        ...

    def flush(self) -> int:
        """Write batched last-pull times; returns how many."""
        ...


class Eviction(Protocol):
    """Forgetting images and the repositories they leave empty."""

    def evict_image(
        self,
        upstream: str,
        repo: str,
        digest: Digest,
        tags: Iterable[str] | None = None,
        *,
        history: bool = True,
    ) -> tuple[str, ...]:
        """Forget image ``digest`` in ``repo`` (its tags there, last pull, and unless
        ``history`` is false its tag moves); returns the tags removed."""
        ...

    def prune_history(self, upstream: str, repo: str, digests: Iterable[Digest]) -> None:
        """Forget the tag moves of ``repo`` to or from ``digests`` (once for many evicted
        images: each ``evict_image(..., history=False)`` leaves them)."""
        ...

    def forget_empty_repositories(self, candidates: Iterable[tuple[str, str]]) -> set[str]:
        """Forget those ``(upstream, repo)`` with no tag or last pull left; ``HOST/REPO``."""
        ...


class Upstreams(Protocol):
    """Everything kept per upstream key, forgotten together when a tenancy rule goes."""

    def forget_upstream(self, upstream: str) -> int:
        """Forget every link, tag, tag move, last pull, cached response and catalog entry of
        ``upstream``; returns how many records."""
        ...


@dataclass(slots=True)
class SnapshotRows:
    """A batch of the records retention judges by, as plain rows (no record objects): what a
    snapshot of a million images is read as. Strings are as stored (unchecked)."""

    # (digest, media_type, size, cached_at, references)
    manifests: list[tuple[str, str, int, float, tuple[str, ...]]] = field(default_factory=list)
    # (upstream, repo, tag, digest)
    tags: list[tuple[str, str, str, str]] = field(default_factory=list)
    # (upstream, repo, digest, last pull); batched last pulls are not included.
    pulls: list[tuple[str, str, str, float]] = field(default_factory=list)
    # (upstream, repo, digest, at): a tag moved away from ``digest`` (or was removed), each
    # repository's oldest first.
    untagged: list[tuple[str, str, str, float]] = field(default_factory=list)


class Snapshots(Protocol):
    """Whole-store reads in one pass, for retention's snapshot of the cache."""

    def snapshot_rows(self) -> Iterator[SnapshotRows]:
        """Every manifest, tag, last pull and move of a tag away from a digest, in batches
        of plain rows, in one pass (retention's snapshot; batched last pulls are not
        included)."""
        ...

    def summary_database(self) -> Path | None:
        """The SQLite file whose ``mirror.db.summary`` tables hold what ``snapshot_rows``
        gives, kept in step with every write (a snapshot copies them in SQL), or ``None``
        (a snapshot reads ``snapshot_rows``)."""
        ...

    def records(self, kinds: Iterable[str]) -> Iterator[tuple[tuple[str, ...], object]]:
        """Every ``(key, record)`` of the kinds asked (``manifest``, ``tag``, ``pull``), keyed
        as ``("manifest", digest)``, ``("tag", upstream, repo, tag)``, ``("pull", upstream,
        repo, digest)``; batched last pulls are not included."""
        ...

    def pending_pulls(self) -> dict[tuple[str, str, str], float]:
        """Last pulls batched in memory and not flushed yet, by ``(upstream, repo, digest)``."""
        ...


class MetadataStore(
    Tags,
    Snapshots,
    Manifests,
    Repositories,
    Links,
    TagHistory,
    CachedResponses,
    Pulls,
    Eviction,
    Upstreams,
    Protocol,
):
    """A whole metadata store: every role, plus the few calls only the admin API, hosted
    repositories and the app's lifecycle make."""

    # A local directory the store needs to serve (readiness checks that it is still there).
    directory: Path

    def delete_tag(self, upstream: str, repo: str, tag: str, at: float) -> TagRecord | None:
        """Remove tag ``repo:tag`` (its move is recorded); the record it had, or ``None``."""
        ...

    def drop_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Forget that ``repo`` at ``upstream`` references ``digest``; whether it did."""
        ...

    def bury(self, upstream: str, repo: str, digest: Digest, at: float) -> None:
        """Note that ``digest`` was deleted from ``repo`` at ``at`` (for the hosted garbage
        collection)."""
        ...

    def unbury(self, upstream: str, repo: str, digest: Digest) -> None:
        """Forget the deletion note of ``digest`` in ``repo``."""
        ...

    def repository_records(self, prefix: str) -> RepositoryRecords:
        """The links, tag targets and deletion notes of every upstream key under ``prefix``."""
        ...

    def close(self) -> None:
        """Flush batched last pulls and release the database."""
        ...
