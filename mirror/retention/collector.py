"""Evicting images and collecting what they leave behind.

Evicting an image forgets it in its repository (its tags there, its last pull). Its manifest
goes once no image in any repository and no remaining manifest refers to it; a blob goes once
no remaining manifest refers to it and no client is reading it (else it is deferred to a later
run). References are counted from the run's snapshot, a digest's count read from it when the
run first touches the digest (so a run holds the counts of what it deletes, never of the whole
cache), and rechecked where a concurrent pull could have changed them: an image pulled since
the snapshot is not evicted.

Hosted repositories are collected too: links there that no present manifest refers to (see
``hosted_gc``) are dropped once unreferenced for a grace period, then released like evicted
images' content.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from mirror.blobstore.interface import BlobStore
from mirror.db.metadata import CachedResponse, ManifestRecord, RepositoryRecords
from mirror.db.retention import RetentionStore
from mirror.db.roles import CachedResponses, Eviction, Links, Manifests, Pulls
from mirror.errors import RegistryError
from mirror.hosted.names import HOSTED_PREFIX, REFERRERS
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.retention.audit import AuditLog
from mirror.retention.hosted_gc import Garbage, HostedRepository, garbage, hosted_repositories
from mirror.retention.rules import Decision
from mirror.retention.snapshot import Snapshot

log = logging.getLogger(__name__)

# Yield to the event loop after this many deletions (pulls keep being served during a run).
YIELD_EVERY = 64
# How long a blob that was not cached when it became garbage stays on the deferred list, in
# case a client that already had its manifest fills it afterwards (and how long a deleted blob
# filled again is looked at again: ``RetentionService.refilled``).
DEFERRED_GRACE = 3600.0


class CollectorRecords(Manifests, Pulls, Eviction, Links, CachedResponses, Protocol):
    """The metadata a collection changes: manifests, last pulls, eviction, hosted links (and
    reads: hosted referrers)."""

    def drop_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Forget that ``repo`` at ``upstream`` references ``digest``; whether it did."""
        ...

    def bury(self, upstream: str, repo: str, digest: Digest, at: float) -> None:
        """Note that ``digest`` was deleted from ``repo`` at ``at``."""
        ...

    def unbury(self, upstream: str, repo: str, digest: Digest) -> None:
        """Forget the deletion note of ``digest`` in ``repo``."""
        ...

    def repository_records(self, prefix: str) -> RepositoryRecords:
        """Links, tags and deletion notes of the upstream keys starting with ``prefix``."""
        ...


@dataclass
class Outcome:
    """What one eviction pass did."""

    evicted: list[Decision] = field(default_factory=list)
    # Images selected but left alone because they were pulled during the run.
    spared: list[Decision] = field(default_factory=list)
    deleted: list[tuple[str, Digest, int]] = field(default_factory=list)
    deferred: set[Digest] = field(default_factory=set)
    # Hosted links dropped as garbage: ``(<tenancy>/<repo>, digest)``.
    unlinked: list[tuple[str, Digest]] = field(default_factory=list)
    # Bytes deleted from disk by the hosted collection, per tenancy whose unlink freed them.
    reclaimed: dict[str, int] = field(default_factory=dict)

    @property
    def bytes_freed(self) -> int:
        """The bytes the deleted objects took on disk."""
        return sum(size for _, _, size in self.deleted)


class Collector:
    """Deletes what evicted images leave unreferenced, from a snapshot's reference counts."""

    def __init__(
        self,
        snapshot: Snapshot,
        metadata: CollectorRecords,
        store: BlobStore,
        state: RetentionStore,
        in_use: Callable[[Digest], bool],
        audit: AuditLog,
        metrics: Metrics,
        *,
        trigger: str,
        run_id: str,
        now: float,
        refilled: Mapping[Digest, float] | None = None,
        on_deleted: Callable[[Digest], None] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._metadata = metadata
        self._store = store
        self._state = state
        self._in_use = in_use
        self._audit = audit
        self._metrics = metrics
        self._trigger = trigger
        self._run_id = run_id
        self.outcome = Outcome()
        # The reference counts of the digests this run touched (the others are the
        # snapshot's, read on first touch).
        self._counts: dict[Digest, int] = {}
        # A blob linked in a hosted repository is held there (pushed, perhaps before the
        # manifest that will refer to it): nothing upstream could bring it back.
        self._hosted = hosted_repositories(metadata.repository_records(HOSTED_PREFIX))
        self._links: Counter[Digest] = Counter()
        for repository in self._hosted:
            self._links.update(repository.links)
        self._steps = 0
        # The repositories evictions took images from (``forget_empty`` looks at them).
        self._touched: set[tuple[str, str]] = set()
        self._now = now
        # Deferred by earlier runs, and the blobs they deleted that a fill installed again
        # (``refilled``: each with when it was deleted), retried alike by ``collect_deferred``.
        self._previously_deferred = {**(refilled or {}), **state.deferred()}
        # Told each blob this run is about to delete (a fill may install it again at once).
        self._on_deleted = on_deleted

    def pulled_since_snapshot(self, decision: Decision) -> bool:
        """Whether a member of the image's group was pulled after the snapshot."""
        image = decision.image
        for digest in image.group:
            now = self._metadata.last_pull(image.upstream, image.repo, digest)
            if now is None:
                continue
            if now != self._snapshot.own_pull(image.upstream, image.repo, str(digest)):
                return True
        return False

    def _count(self, digest: Digest) -> int:
        """The references to ``digest`` left (the snapshot's, less what the run dropped)."""
        count = self._counts.get(digest)
        if count is None:
            return self._snapshot.references(str(digest)) + self._links[digest]
        return count

    def _drop(self, digest: Digest) -> None:
        """One reference to ``digest`` fewer (its count held from now on)."""
        self._counts[digest] = self._count(digest) - 1

    def _cached_manifest(self, digest: Digest) -> ManifestRecord | None:
        """The record of ``digest`` in the snapshot, or cached since."""
        return self._snapshot.manifest(str(digest)) or self._metadata.manifest(digest)

    async def evict(self, decisions: Iterable[Decision]) -> None:
        """Evict every image of ``decisions`` (one group at a time), then collect
        (``forget_empty`` afterwards). Each repository's tag history is pruned of the evicted
        images once, at the end (even if a deletion fails midway), not once an image."""
        spared: set[tuple[str, str, tuple[Digest, ...]]] = set()
        cleared: set[tuple[str, str, tuple[Digest, ...]]] = set()
        evicted: dict[tuple[str, str], list[Digest]] = {}
        try:
            for decision in decisions:
                image = decision.image
                group = (image.upstream, image.repo, image.group)
                if group not in cleared and (
                    group in spared or self.pulled_since_snapshot(decision)
                ):
                    spared.add(group)
                    self.outcome.spared.append(decision)
                    continue
                cleared.add(group)
                evicted.setdefault((image.upstream, image.repo), []).append(image.digest)
                await self._evict(decision)
        finally:
            for (upstream, repo), digests in evicted.items():
                self._metadata.prune_history(upstream, repo, digests)

    async def _evict(self, decision: Decision) -> None:
        """Forget one image (its tag moves aside) and collect what it leaves."""
        image = decision.image
        tags = self._metadata.evict_image(
            image.upstream, image.repo, image.digest, image.tags, history=False
        )
        self._touched.add((image.upstream, image.repo))
        if image.upstream.startswith(HOSTED_PREFIX):
            # A hosted image a policy deletes leaves its repository for good.
            if self._metadata.drop_link(image.upstream, image.repo, image.digest):
                self._drop(image.digest)
                self._metadata.bury(image.upstream, image.repo, image.digest, self._now)
        self.outcome.evicted.append(decision)
        self._metrics.evictions.labels(self._trigger, decision.rule).inc()
        self._audit.write(
            "evict-image",
            run=self._run_id,
            trigger=self._trigger,
            repository=image.repository,
            digest=str(image.digest),
            tags_removed=list(tags),
            policy=decision.policy,
            rule=decision.rule,
            reason=decision.reason,
        )
        await self._release(image.digest, f"evicted {image.name}")

    def forget_empty(self) -> None:
        """Forget the repositories this run's evictions left empty (one pass over the
        metadata, so once a run: it leaves the catalog)."""
        if self._touched:
            self._metadata.forget_empty_repositories(self._touched)
            self._touched = set()

    async def collect_deferred(self) -> None:
        """Retry blobs deferred by earlier runs that are still unreferenced (in use then, or
        not yet cached: a client that already had the manifest may fill them after it went)."""
        for digest, since in sorted(self._previously_deferred.items(), key=_by_digest):
            if self._count(digest) <= 0 and self._snapshot.manifest(str(digest)) is None:
                expired = self._now - since > DEFERRED_GRACE
                await self._delete_blob(digest, "deferred from an earlier run", retry=expired)

    async def collect_orphans(self, enough: Callable[[], bool]) -> int:
        """Delete cached objects that no cached manifest references and that are not
        manifests themselves (blobs pulled by digest alone, leftovers of evicted images), until
        ``enough()``; objects in use are left alone. Returns how many were deleted.

        Only the capacity limit calls this: under the default policy an orphan costs nothing
        but disk, and it is fetched again on its next pull."""
        deleted = 0
        for digest in list(self._store.digests()):
            if enough():
                break
            if self._count(digest) > 0 or self._snapshot.manifest(str(digest)) is not None:
                continue
            if self._metadata.manifest(digest) is not None or self._in_use(digest):
                continue  # a manifest cached after the snapshot, or a blob being served
            if await self._delete_object("blob", digest, "orphan: no cached manifest refers to it"):
                deleted += 1
        return deleted

    def save_deferred(self) -> None:
        """Remember the blobs deferred this run (in use), with when each was first deferred."""
        previous = self._previously_deferred
        still = {d: previous.get(d, self._now) for d in self.outcome.deferred}
        if still != previous:
            self._state.set_deferred(still)

    def released(self) -> dict[Digest, float]:
        """What this run released for the other replicas of a tier (they may hold copies):
        the objects it deleted and those it newly left (not held here, or in use)."""
        previous = self._previously_deferred
        left = {d: self._now for d in self.outcome.deferred if d not in previous}
        return {digest: self._now for _, digest, _ in self.outcome.deleted} | left

    async def _release(self, digest: Digest, reason: str) -> None:
        """Drop one reference to ``digest``; delete it when none is left."""
        self._drop(digest)
        await self._collect(digest, reason)

    async def _collect(self, digest: Digest, reason: str) -> None:
        """Delete ``digest`` if nothing references it (a manifest: its record too, then
        release what it references)."""
        if self._count(digest) > 0 or self._linked_again(digest):
            return
        record = self._cached_manifest(digest)
        if record is None:
            await self._delete_blob(digest, reason)
            return
        self._metadata.delete_manifest(digest)
        await self._delete_object("manifest", digest, reason)
        for reference in record.referenced():
            await self._release(reference, f"only referenced by manifest {digest}")

    def _linked_again(self, digest: Digest) -> bool:
        """Whether a hosted repository linked ``digest`` since the snapshot (a push)."""
        return any(self._metadata.linked(r.upstream, r.repo, digest) for r in self._hosted)

    # Hosted repositories ------------------------------------------------------------------

    async def collect_hosted(self, grace: float) -> None:
        """Drop the links of hosted repositories that no present manifest has referred to for
        ``grace`` seconds, and the notes of deletions whose leftovers are all dropped; then
        delete what nothing references any more. Bytes freed are counted per tenancy."""
        first_seen = self._state.unreferenced()
        still: dict[tuple[str, str, Digest], float] = {}
        for repository in self._hosted:
            found = garbage(repository, self._edges(repository), self._is_manifest)
            due: set[Digest] = set()
            for digest in found.unreferenced:
                key = (repository.upstream, repository.repo, digest)
                left = found.unreferenced_since(digest, repository.deleted)
                since = first_seen.get(key, left if left is not None else self._now)
                if self._now - since >= grace:
                    due.add(digest)
                else:
                    still[key] = since
            self._unlink(repository, due, grace)
            released = sorted(due | self._buried_out(repository, found, due, grace), key=str)
            before = len(self.outcome.deleted)
            for digest in released:
                await self._collect(digest, f"hosted: left {repository.name}, referenced nowhere")
            freed = sum(size for _, _, size in self.outcome.deleted[before:])
            if freed:
                tenancy = repository.tenancy
                self.outcome.reclaimed[tenancy] = self.outcome.reclaimed.get(tenancy, 0) + freed
                self._metrics.hosted_bytes_reclaimed.labels(tenancy).inc(freed)
        self._state.set_unreferenced(still)

    def _unlink(self, repository: HostedRepository, due: set[Digest], grace: float) -> None:
        for digest in sorted(due, key=str):
            if not self._metadata.drop_link(repository.upstream, repository.repo, digest):
                continue
            self._drop(digest)
            self.outcome.unlinked.append((repository.name, digest))
            self._audit.write(
                "unlink-hosted",
                run=self._run_id,
                trigger=self._trigger,
                repository=repository.name,
                digest=str(digest),
                reason=f"no manifest in the repository has referred to it for {grace:g} s",
            )

    def _buried_out(
        self, repository: HostedRepository, found: Garbage, due: set[Digest], grace: float
    ) -> set[Digest]:
        """The deleted digests of ``repository`` whose notes go now (their leftovers are
        dropped, or it was pushed again), to be collected; their notes are forgotten."""
        done: set[Digest] = set()
        for dead, at in repository.deleted.items():
            pushed_again = dead in repository.links
            if pushed_again or (self._now - at >= grace and found.left_by[dead] <= due):
                self._metadata.unbury(repository.upstream, repository.repo, dead)
                if not pushed_again:
                    done.add(dead)
        return done

    def _is_manifest(self, digest: Digest) -> bool:
        return self._cached_manifest(digest) is not None

    def _edges(self, repository: HostedRepository) -> Callable[[Digest], list[Digest]]:
        """What a digest refers to in ``repository``: a manifest's references and the
        referrers pushed there with it as their subject."""

        def edges(digest: Digest) -> list[Digest]:
            record = self._cached_manifest(digest)
            if record is None:
                return []
            where = (REFERRERS, repository.upstream, repository.repo, str(digest))
            return [*record.referenced(), *_referrers(self._metadata.response(*where))]

        return edges

    async def _delete_blob(self, digest: Digest, reason: str, *, retry: bool = False) -> None:
        if self._in_use(digest):
            self.outcome.deferred.add(digest)
            self._metrics.deletions_deferred.inc()
            self._audit.write("defer-blob", run=self._run_id, digest=str(digest), reason="in use")
            return
        self.outcome.deferred.discard(digest)
        if not await self._delete_object("blob", digest, reason) and not retry:
            # Not cached (yet): look again next run, in case a pull still fills it.
            self.outcome.deferred.add(digest)

    async def _delete_object(self, kind: str, digest: Digest, reason: str) -> bool:
        size = await self._store.stat(digest)
        if size is None:
            return False
        if kind == "blob" and self._on_deleted is not None:
            # Before the deletion: a fill can install the blob again before it returns.
            self._on_deleted(digest)
        if not await self._store.delete(digest):
            return False
        self.outcome.deleted.append((kind, digest, size))
        self._metrics.objects_deleted.labels(kind).inc()
        self._metrics.bytes_freed.labels(self._trigger).inc(size)
        self._audit.write(
            f"delete-{kind}", run=self._run_id, digest=str(digest), size=size, reason=reason
        )
        self._steps += 1
        if self._steps % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        return True


def _by_digest(item: tuple[Digest, float]) -> str:
    return str(item[0])


def _referrers(record: CachedResponse | None) -> list[Digest]:
    """The digests of a hosted referrers record's descriptors."""
    if record is None:
        return []
    found = []
    for descriptor in json.loads(record.body):
        try:
            found.append(Digest.parse(descriptor["digest"]))
        except (KeyError, TypeError, RegistryError):
            continue
    return found
