"""What is cached, as retention sees it: images per repository, with the facts rules judge.

An *image* is a cached manifest in one repository (``HOST/REPO@DIGEST``): one a tag points at,
one a client pulled, or a child of such an index. An index and its children form a *group*
that is judged as one: a pull of any member counts for all (pulling a platform through its
index is a pull of the index), and a tag on the index tags its children.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from mirror.db.metadata import ManifestRecord
from mirror.db.roles import Manifests, Pulls, TagHistory, Tags
from mirror.errors import RegistryError
from mirror.oci.digest import Digest
from mirror.retention.names import policy_name


class InventoryRecords(Tags, Manifests, Pulls, TagHistory, Protocol):
    """The metadata an inventory is read from: tags, manifests, last pulls, tag history."""


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
        """Read the metadata once and derive every image's facts."""
        manifests = dict(metadata.manifests())
        references = {digest: record.referenced() for digest, record in manifests.items()}
        tags: dict[tuple[str, str], dict[Digest, list[str]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for upstream, repo, tag, tag_record in metadata.tags():
            if (digest := _parsed(tag_record.digest)) is not None:
                tags[(upstream, repo)][digest].append(tag)
        pulls = metadata.pulls()
        members: dict[tuple[str, str], set[Digest]] = defaultdict(set)
        for (upstream, repo), by_digest in tags.items():
            members[(upstream, repo)].update(d for d in by_digest if d in manifests)
        for upstream, repo, digest in pulls:
            if digest in manifests:
                members[(upstream, repo)].add(digest)
        images: list[Image] = []
        for (upstream, repo), digests in sorted(members.items()):
            _add_children(digests, references)
            history = metadata.tag_history(upstream, repo)
            # When each digest last lost a tag (moves are recorded oldest first).
            untagged_at = {
                digest: m.at
                for m in history
                if m.from_digest is not None and (digest := _parsed(m.from_digest)) is not None
            }
            repo_tags = tags.get((upstream, repo), {})
            for group in _groups(digests, references):
                own = {d: pulls.get((upstream, repo, d)) for d in group}
                group_tags = tuple(sorted(t for d in group for t in repo_tags.get(d, ())))
                pulled = [p for p in own.values() if p is not None]
                if group_tags:
                    last_tagged: float | None = now
                    untagged_since = now
                else:
                    known = [untagged_at[d] for d in group if d in untagged_at]
                    last_tagged = max(known) if known else None
                    untagged_since = max(untagged_at.get(d, manifests[d].cached_at) for d in group)
                for digest in group:
                    record = manifests[digest]
                    images.append(
                        Image(
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
                    )
        return cls(tuple(images), manifests, references)

    def repositories(self) -> set[tuple[str, str]]:
        """Every ``(upstream, repo)`` with at least one image."""
        return {(image.upstream, image.repo) for image in self.images}


def _parsed(text: str) -> Digest | None:
    """The digest a stored record names (``None`` if it is malformed: nothing is cached under
    it)."""
    try:
        return Digest.parse(text)
    except RegistryError:
        return None


def _add_children(digests: set[Digest], references: dict[Digest, tuple[Digest, ...]]) -> None:
    """Add the cached manifests that members reference (an index's children), transitively."""
    pending = list(digests)
    while pending:
        for reference in references[pending.pop()]:
            if reference in references and reference not in digests:
                digests.add(reference)
                pending.append(reference)


def _groups(
    digests: Iterable[Digest], references: dict[Digest, tuple[Digest, ...]]
) -> list[tuple[Digest, ...]]:
    """Connected components of the parent/child relation among ``digests``, each in digest
    order, in the order of their first digests."""
    members = set(digests)
    parent = {d: d for d in members}

    def root(d: Digest) -> Digest:
        while parent[d] != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    for digest in members:
        for reference in references[digest]:
            if reference in members:
                parent[root(reference)] = root(digest)
    groups: dict[Digest, list[Digest]] = defaultdict(list)
    for digest in sorted(members, key=str):
        groups[root(digest)].append(digest)
    return sorted((tuple(g) for g in groups.values()), key=lambda g: [str(d) for d in g])
