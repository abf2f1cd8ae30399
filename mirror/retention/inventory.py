"""What is cached, as retention sees it: images per repository, with the facts rules judge.

An *image* is a cached manifest in one repository (``HOST/REPO@DIGEST``): one a tag points at,
one a client pulled, or a child of such an index. An index and its children form a *group*
that is judged as one: a pull of any member counts for all (pulling a platform through its
index is a pull of the index), and a tag on the index tags its children.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from mirror.db.metadata import ManifestRecord
from mirror.db.roles import Manifests, Pulls, TagHistory, Tags
from mirror.errors import RegistryError
from mirror.oci.digest import Digest
from mirror.retention.names import policy_name
from mirror.retention.snapshot import Snapshot, SnapshotRecords

# A digest, or its text.
T = TypeVar("T", Digest, str)


class InventoryRecords(Tags, Manifests, Pulls, TagHistory, SnapshotRecords, Protocol):
    """The metadata an inventory is read from: tags, manifests, last pulls, tag history."""


class References(Protocol):
    """What each cached manifest references; ``in`` tells whether a digest is one."""

    def __contains__(self, digest: object) -> bool: ...

    def __getitem__(self, digest: Digest) -> tuple[Digest, ...]: ...


@dataclass(frozen=True, slots=True)
class Image:
    """One cached manifest in one repository, with its group's retention facts."""

    upstream: str
    repo: str
    digest: Digest
    media_type: str
    size: int
    cached_at: float
    # Its own last pull when the snapshot was taken (a change means "pulled during the run").
    own_pull: float | None
    # Group facts: tags on any member, the latest pull of any member, when the group last had
    # a tag (``None``: never), and since when it has had none (``cached_at`` if never tagged).
    tags: tuple[str, ...]
    last_pull: float | None
    last_tagged: float | None
    untagged_since: float
    group: tuple[Digest, ...]

    @property
    def repository(self) -> str:
        """How policies name its repository: ``HOST/REPO``, or ``<tenancy>/<repo>`` hosted."""
        return policy_name(self.upstream, self.repo)

    @property
    def name(self) -> str:
        """``<upstream>/<repo>@<digest>``, as the audit log names an image."""
        return f"{self.repository}@{self.digest}"

    @property
    def last_used(self) -> float:
        """Last pull, or when it was cached if never pulled (for least-recently-pulled order)."""
        return self.last_pull if self.last_pull is not None else self.cached_at


@dataclass(frozen=True, slots=True)
class Inventory:
    """A snapshot of every cached image and every manifest record."""

    images: tuple[Image, ...]
    manifests: dict[Digest, ManifestRecord]
    # What each cached manifest references (its record's references, parsed once).
    references: dict[Digest, tuple[Digest, ...]]

    @classmethod
    def load(cls, metadata: InventoryRecords, now: float) -> Inventory:
        """Read the metadata once and derive every image's facts (all of them in memory: the
        collector's reference counts need them; dry runs stream ``images`` instead)."""
        manifests = dict(metadata.manifests())
        references = {digest: record.referenced() for digest, record in manifests.items()}
        return cls(tuple(images(metadata, now)), manifests, references)

    def repositories(self) -> set[tuple[str, str]]:
        """Every ``(upstream, repo)`` with at least one image."""
        return {(image.upstream, image.repo) for image in self.images}


def images(
    metadata: InventoryRecords, now: float, directory: Path | None = None
) -> Generator[Image]:
    """Every cached image with its facts, one repository at a time (repositories in name
    order, groups in digest order), from a snapshot spilled to a temporary index in
    ``directory``: memory holds one repository's records, whatever the cache's size."""
    snapshot = Snapshot(metadata, directory)
    try:
        yield from snapshot_images(metadata, snapshot, now)
    finally:
        snapshot.close()


def snapshot_images(metadata: InventoryRecords, snapshot: Snapshot, now: float) -> Iterator[Image]:
    """``images`` of a snapshot already taken."""
    for upstream, repo in snapshot.repositories():
        yield from _repository(metadata, snapshot, upstream, repo, now)


def _repository(
    metadata: InventoryRecords, snapshot: Snapshot, upstream: str, repo: str, now: float
) -> Iterator[Image]:
    """The images of one repository."""
    repo_tags = {checked(d): tags for d, tags in snapshot.tags(upstream, repo).items()}
    pulls = {checked(d): at for d, at in snapshot.pulls(upstream, repo).items()}
    records = _Manifests(snapshot)
    digests = set(repo_tags) | set(pulls)
    records.load_reachable(digests)
    _add_children(digests, records)
    # When each digest last lost a tag (moves are recorded oldest first).
    untagged_at = {
        digest: m.at
        for m in metadata.tag_history(upstream, repo)
        if m.from_digest is not None and (digest := _parsed(m.from_digest)) is not None
    }
    for group in _groups(digests, records):
        own = {d: pulls.get(d) for d in group}
        group_tags = tuple(sorted(t for d in group for t in repo_tags.get(d, ())))
        pulled = [p for p in own.values() if p is not None]
        if group_tags:
            last_tagged: float | None = now
            untagged_since = now
        else:
            known = [untagged_at[d] for d in group if d in untagged_at]
            last_tagged = max(known) if known else None
            untagged_since = max(untagged_at.get(d, records.record(d).cached_at) for d in group)
        for digest in group:
            record = records.record(digest)
            yield Image(
                upstream,
                repo,
                digest,
                record.media_type,
                record.size,
                record.cached_at,
                own[digest],
                group_tags,
                max(pulled) if pulled else None,
                last_tagged,
                untagged_since,
                group,
            )


class _Manifests:
    """The manifest records one repository's images need, looked up in the snapshot once."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._records: dict[Digest, ManifestRecord | None] = {}
        # What each looked-up manifest references, parsed once.
        self._references: dict[Digest, tuple[Digest, ...]] = {}

    def load_reachable(self, digests: Iterable[Digest]) -> None:
        """Look up ``digests`` and everything their records reference, transitively, a
        level at a time in batched queries (instead of one query per digest)."""
        frontier = {d for d in digests if d not in self._records}
        while frontier:
            found = self._snapshot.manifests(str(d) for d in frontier)
            for digest in frontier:
                record = self._records[digest] = found.get(str(digest))
                # The snapshot keeps only references that are digests (``referenced``'s).
                self._references[digest] = (
                    tuple(map(checked, record.references)) if record is not None else ()
                )
            frontier = {
                reference
                for digest in frontier
                for reference in self._references[digest]
                if reference not in self._records
            }

    def _lookup(self, digest: Digest) -> ManifestRecord | None:
        if digest not in self._records:
            self._records[digest] = self._snapshot.manifest(str(digest))
        return self._records[digest]

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, Digest) and self._lookup(digest) is not None

    def __getitem__(self, digest: Digest) -> tuple[Digest, ...]:
        """What cached manifest ``digest`` references."""
        if digest not in self._references:
            record = self._lookup(digest)
            self._references[digest] = record.referenced() if record is not None else ()
        return self._references[digest]

    def record(self, digest: Digest) -> ManifestRecord:
        """The record of cached manifest ``digest``."""
        record = self._lookup(digest)
        assert record is not None, digest
        return record


def checked(text: str) -> Digest:
    """The digest of a string the snapshot already checked (``Digest.parse`` without its
    regular expression again: the canonical string is the text itself)."""
    algorithm, _, encoded = text.partition(":")
    return Digest(algorithm, encoded)


def _parsed(text: str) -> Digest | None:
    """The digest a stored record names (``None`` if it is malformed: nothing is cached under
    it)."""
    try:
        return Digest.parse(text)
    except RegistryError:
        return None


def _add_children(digests: set[Digest], references: References) -> None:
    """Add the cached manifests that members reference (an index's children), transitively."""
    pending = list(digests)
    while pending:
        for reference in references[pending.pop()]:
            if reference in references and reference not in digests:
                digests.add(reference)
                pending.append(reference)


def _groups(digests: Iterable[Digest], references: References) -> list[tuple[Digest, ...]]:
    """Connected components of the parent/child relation among ``digests``, each in digest
    order, in the order of their first digests."""
    return groups_of(digests, references.__getitem__)


def groups_of(members: Iterable[T], references: Callable[[T], Iterable[T]]) -> list[tuple[T, ...]]:
    """Connected components of the relation ``references`` (parent to children) among
    ``members`` (digests, or their text), each in digest order, in the order of their first
    digests."""
    within = set(members)
    parent = {d: d for d in within}

    def root(d: T) -> T:
        while parent[d] != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    for digest in within:
        for reference in references(digest):
            if reference in within:
                parent[root(reference)] = root(digest)
    groups: dict[T, list[T]] = defaultdict(list)
    for digest in sorted(within, key=str):
        groups[root(digest)].append(digest)
    return sorted((tuple(g) for g in groups.values()), key=lambda g: [str(d) for d in g])
