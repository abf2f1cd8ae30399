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

from mirror.db.metadata import ManifestRecord, Metadata


@dataclass(frozen=True, slots=True)
class Image:
    """One cached manifest in one repository, with its group's retention facts."""

    upstream: str
    repo: str
    digest: str
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
    group: tuple[str, ...]

    @property
    def repository(self) -> str:
        """``HOST/REPO``, how policies name repositories."""
        return f"{self.upstream}/{self.repo}"

    @property
    def name(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def last_used(self) -> float:
        """Last pull, or when it was cached if never pulled (for least-recently-pulled order)."""
        return self.last_pull if self.last_pull is not None else self.cached_at


@dataclass(frozen=True, slots=True)
class Inventory:
    """A snapshot of every cached image and every manifest record."""

    images: tuple[Image, ...]
    manifests: dict[str, ManifestRecord]

    @classmethod
    def load(cls, metadata: Metadata, now: float) -> Inventory:
        """Read the metadata once and derive every image's facts."""
        manifests = dict(metadata.manifests())
        tags: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for upstream, repo, tag, tag_record in metadata.tags():
            tags[(upstream, repo)][tag_record.digest].append(tag)
        pulls = metadata.pulls()
        members: dict[tuple[str, str], set[str]] = defaultdict(set)
        for (upstream, repo), by_digest in tags.items():
            members[(upstream, repo)].update(d for d in by_digest if d in manifests)
        for upstream, repo, digest in pulls:
            if digest in manifests:
                members[(upstream, repo)].add(digest)
        images: list[Image] = []
        for (upstream, repo), digests in sorted(members.items()):
            _add_children(digests, manifests)
            history = metadata.tag_history(upstream, repo)
            # When each digest last lost a tag (moves are recorded oldest first).
            untagged_at = {m.from_digest: m.at for m in history if m.from_digest is not None}
            repo_tags = tags.get((upstream, repo), {})
            for group in _groups(digests, manifests):
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
        return cls(tuple(images), manifests)

    def repositories(self) -> set[tuple[str, str]]:
        return {(image.upstream, image.repo) for image in self.images}


def _add_children(digests: set[str], manifests: dict[str, ManifestRecord]) -> None:
    """Add the cached manifests that members reference (an index's children), transitively."""
    pending = list(digests)
    while pending:
        for reference in manifests[pending.pop()].references:
            if reference in manifests and reference not in digests:
                digests.add(reference)
                pending.append(reference)


def _groups(digests: Iterable[str], manifests: dict[str, ManifestRecord]) -> list[tuple[str, ...]]:
    """Connected components of the parent/child relation among ``digests``."""
    members = set(digests)
    parent = {d: d for d in members}

    def root(d: str) -> str:
        while parent[d] != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    for digest in members:
        for reference in manifests[digest].references:
            if reference in members:
                parent[root(reference)] = root(digest)
    groups: dict[str, list[str]] = defaultdict(list)
    for digest in sorted(members):
        groups[root(digest)].append(digest)
    return sorted(tuple(g) for g in groups.values())
