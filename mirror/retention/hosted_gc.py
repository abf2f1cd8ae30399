"""The garbage of a hosted repository: the links (blobs, child manifests, referrers) that no
manifest still present there refers to.

A manifest linked in the repository is present. It is a root, kept for its own sake, when a
tag points at it or when it was pushed on its own (untagged, pullable by digest); it is not
when it was only there for a manifest a client deleted: a child of a deleted index, or a
referrer of a deleted subject, that no tag points at. Everything a root reaches (children,
config, layers, referrers of a reached manifest) is referenced; every other link is garbage.
A blob uploaded for a manifest not pushed yet is garbage too: the grace period spares it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from mirror.db.metadata import RepositoryRecords
from mirror.hosted.names import HOSTED_PREFIX
from mirror.oci.digest import Digest

# What a digest refers to in the repository (a manifest's references and referrers; none for
# a blob).
Edges = Callable[[Digest], Iterable[Digest]]


@dataclass(frozen=True, slots=True)
class HostedRepository:
    """One hosted repository as the collector's snapshot saw it."""

    upstream: str
    repo: str
    links: frozenset[Digest]
    # The digests its tags point at, as stored.
    tagged: frozenset[str]
    # Digests a client or a policy deleted from it, with when.
    deleted: Mapping[Digest, float]

    @property
    def tenancy(self) -> str:
        """The tenancy the repository belongs to."""
        return self.upstream.removeprefix(HOSTED_PREFIX)

    @property
    def name(self) -> str:
        """``<tenancy>/<repo>``, as clients name it."""
        return f"{self.tenancy}/{self.repo}"


def hosted_repositories(records: RepositoryRecords) -> tuple[HostedRepository, ...]:
    """Every repository of ``records`` that holds a link or a deletion note, by name."""
    found = []
    for where in sorted(set(records.links) | set(records.deleted)):
        upstream, repo = where
        found.append(
            HostedRepository(
                upstream,
                repo,
                frozenset(records.links.get(where, ())),
                frozenset(records.tags.get(where, ())),
                dict(records.deleted.get(where, {})),
            )
        )
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Garbage:
    """A repository's unreferenced links, and which of them each deleted digest left behind
    (with that digest's deletion time they have been unreferenced since)."""

    unreferenced: frozenset[Digest]
    left_by: Mapping[Digest, frozenset[Digest]]

    def unreferenced_since(self, digest: Digest, deleted: Mapping[Digest, float]) -> float | None:
        """The earliest deletion that left ``digest`` unreferenced, if one did."""
        times = [deleted[dead] for dead, left in self.left_by.items() if digest in left]
        return min(times) if times else None


def _reach(starts: Iterable[Digest], edges: Edges) -> set[Digest]:
    """Every digest reached from ``starts`` (themselves excluded unless reached)."""
    reached: set[Digest] = set()
    pending = list(starts)
    while pending:
        for target in edges(pending.pop()):
            if target not in reached:
                reached.add(target)
                pending.append(target)
    return reached


def garbage(repo: HostedRepository, edges: Edges, is_manifest: Callable[[Digest], bool]) -> Garbage:
    """The links of ``repo`` no present manifest refers to."""
    present = {d for d in repo.links if is_manifest(d)}
    untagged = {d for d in present if str(d) not in repo.tagged}
    gone = [d for d in repo.deleted if d not in repo.links]  # a re-pushed digest is present
    left = {dead: _reach([dead], edges) for dead in gone}
    dependents = {d for found in left.values() for d in found if d in untagged}
    roots = present - dependents
    reachable = roots | _reach(roots, edges)
    unreferenced = frozenset(repo.links - reachable)
    return Garbage(unreferenced, {dead: frozenset(f & unreferenced) for dead, f in left.items()})
