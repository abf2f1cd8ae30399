"""The retention service: policy management, runs (scheduled, on demand, dry), and eviction
for the cache size limit. One run or eviction at a time."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mirror.blobstore.capacity import CapacityLimit
from mirror.blobstore.interface import BlobStore
from mirror.clock import Clock
from mirror.db.retention import RetentionStore
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.names import hosted_key
from mirror.lru import Lru
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.retention.audit import AuditLog, iso
from mirror.retention.collector import DEFERRED_GRACE, Collector, CollectorRecords, Outcome
from mirror.retention.inventory import InventoryRecords, snapshot_images
from mirror.retention.lines import (
    Governing,
    Judged,
    Line,
    line_dict,
    report_lines,
    repositories_judged,
    spared,
)
from mirror.retention.policy import PolicyEdit, RetentionPolicy
from mirror.retention.rules import Decision, least_recently_pulled
from mirror.retention.snapshot import Snapshot
from mirror.retention.spill import ReportLines
from mirror.retention.view import dry_run_source

log = logging.getLogger(__name__)
# How many recently deleted blobs a replica remembers for ``RetentionService.refilled`` (about
# 100 bytes each; a run that deleted more remembers its last ones).
DELETED_LATELY = 65_536


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    """A policy as the admin API shows it: with its repositories and, while it lasts, the end
    of its cooling period."""

    policy: RetentionPolicy
    repositories: tuple[str, ...]
    cooling_until: float | None

    def as_json(self) -> dict[str, Any]:
        """The admin API's JSON object for the policy."""
        return self.policy.as_json() | {
            "global": self.policy.is_global,
            "repositories": list(self.repositories),
            "cooling_until": iso(self.cooling_until),
        }


@dataclass
class Report:
    """The result of a retention run: every image's line (kept on disk), and what was
    deleted."""

    run_id: str
    trigger: str
    dry_run: bool
    started_at: float
    images: ReportLines
    outcome: Outcome = field(default_factory=Outcome)

    def as_json(self) -> dict[str, Any]:
        """The report as the admin API and ``--json`` answer it."""
        return report_head(
            self.run_id, self.trigger, self.dry_run, self.started_at, self.outcome
        ) | {"images": self.lines()}

    def lines(self) -> list[dict[str, Any]]:
        """The report's line for each image (those spared during the run say so)."""
        return [line_dict(line) for line in self.images]

    def head(self) -> dict[str, Any]:
        """The report without its images (``json_chunks`` adds them)."""
        return report_head(self.run_id, self.trigger, self.dry_run, self.started_at, self.outcome)

    async def batches(self, size: int = 1_000) -> AsyncIterator[list[Line]]:
        """The report's lines read back ``size`` at a time (never all in memory)."""
        lines = iter(self.images)
        while batch := list(itertools.islice(lines, size)):
            yield batch


def report_head(
    run_id: str, trigger: str, dry_run: bool, started_at: float, outcome: Outcome
) -> dict[str, Any]:
    """A run report without its images (``images`` comes between ``started_at`` and
    ``evicted``)."""
    return {
        "run": run_id,
        "trigger": trigger,
        "dry_run": dry_run,
        "started_at": iso(started_at),
        "images": [],
        "evicted": len(outcome.evicted),
        "deleted": [
            {"kind": kind, "digest": str(digest), "size": size}
            for kind, digest, size in outcome.deleted
        ],
        "deferred": sorted(str(digest) for digest in outcome.deferred),
        "bytes_freed": outcome.bytes_freed,
        "hosted_unlinked": [
            {"repository": name, "digest": str(digest)} for name, digest in outcome.unlinked
        ],
        "hosted_reclaimed": dict(sorted(outcome.reclaimed.items())),
    }


@dataclass(frozen=True, slots=True)
class DryRun:
    """A dry run being streamed: its report's head, and its lines in batches."""

    head: dict[str, Any]
    batches: AsyncIterator[list[Line]]


class RetentionRecords(InventoryRecords, CollectorRecords, Protocol):
    """The metadata retention reads (inventory) and changes (collection)."""


class RetentionService:
    """Applies the persisted policies to the cache."""

    def __init__(
        self,
        metadata: RetentionRecords,
        store: BlobStore,
        state: RetentionStore,
        audit: AuditLog,
        metrics: Metrics,
        clock: Clock,
        *,
        in_use: Callable[[Digest], bool],
        cooling_period: float,
        capacity: CapacityLimit | None = None,
        hosted_grace: float = 3600.0,
        on_reclaimed: Callable[[str, int], None] | None = None,
    ) -> None:
        self._metadata = metadata
        self._store = store
        self._state = state
        self._audit = audit
        self._metrics = metrics
        self._clock = clock
        self._in_use = in_use
        self.cooling_period = cooling_period
        self.capacity = capacity
        # Seconds a hosted link stays unreferenced before the collector drops it.
        self.hosted_grace = hosted_grace
        # Told ``(tenancy, bytes)`` after each run that deleted a tenancy's hosted content
        # (quotas hook in here).
        self.on_reclaimed = on_reclaimed
        self._lock = asyncio.Lock()
        # Where dry runs spill their snapshot (``None``: the system's temporary directory).
        self.scratch: Path | None = None
        # Called after every run or eviction that deleted something for real (hosted quotas
        # recount what the tenancies still store).
        self.after_collect: Callable[[], Awaitable[None]] | None = None
        # The blobs this replica's runs deleted lately, and when; and those of them a fill has
        # installed again since (``refilled``), for the next run to look at.
        self._deleted_lately: Lru[Digest, float] = Lru(DELETED_LATELY)
        self._refilled: dict[Digest, float] = {}

    # Policies ---------------------------------------------------------------------------

    def policies(self) -> list[PolicyStatus]:
        """Every policy with its repositories and when its cooling period ends."""
        state = self._state.state()
        now = self._clock.now()
        described = []
        for policy in state.policies:
            until = policy.widened_at + self.cooling_period
            repositories = state.repositories(policy.name)
            described.append(PolicyStatus(policy, repositories, until if until > now else None))
        return described

    def policy(self, name: str) -> PolicyStatus:
        """Policy ``name`` and its status; ``POLICY_UNKNOWN`` without one."""
        for described in self.policies():
            if described.policy.name == name:
                return described
        self._state.state().policy(name)  # raises POLICY_UNKNOWN
        raise AssertionError(name)

    def create(self, policy: RetentionPolicy) -> PolicyStatus:
        """Create custom policy ``policy``; ``POLICY_CONFLICT`` if the name is taken."""
        created = self._state.create(policy, self._clock.now())
        return self.policy(created.name)

    def edit(self, name: str, edit: PolicyEdit) -> PolicyStatus:
        """Edit policy ``name``; ``POLICY_UNKNOWN`` or ``PolicyInvalid`` when it cannot be."""
        self._state.edit(name, edit, self._clock.now())
        return self.policy(name)

    def delete(self, name: str) -> None:
        """Delete custom policy ``name``; its repositories fall under the global policy."""
        self._state.delete(name, self._clock.now())

    def attach(self, name: str, repository: str, *, move: bool = False) -> PolicyStatus:
        """Put ``repository`` (``HOST/REPO``) under custom policy ``name``."""
        self._state.attach(name, repository, self._clock.now(), move=move)
        return self.policy(name)

    def detach(self, name: str, repository: str) -> PolicyStatus:
        """Return ``repository`` from policy ``name`` to the global policy."""
        self._state.detach(name, repository, self._clock.now())
        return self.policy(name)

    def declare(self, declared: Iterable[tuple[RetentionPolicy, tuple[str, ...]]]) -> None:
        """Apply the policies of the config file (create or update, move repositories)."""
        for policy, repositories in declared:
            self._state.declare(policy, repositories, self._clock.now())

    # Runs -------------------------------------------------------------------------------

    def refilled(self, digest: Digest) -> None:
        """A fill installed ``digest``. A client that held an evicted image's manifest can pull
        its blobs after the run deleted them, and the fill then installs a blob no cached
        manifest may refer to: one this replica deleted within ``DEFERRED_GRACE`` is looked at
        again by the next run (deleted unless referenced again, or kept while in use)."""
        deleted = self._deleted_lately.get(digest)
        if deleted is not None and self._clock.now() - deleted <= DEFERRED_GRACE:
            self._refilled[digest] = deleted

    def _collector(self, snapshot: Snapshot, trigger: str, run_id: str, now: float) -> Collector:
        refilled, self._refilled = self._refilled, {}
        return Collector(
            snapshot,
            self._metadata,
            self._store,
            self._state,
            self._in_use,
            self._audit,
            self._metrics,
            trigger=trigger,
            run_id=run_id,
            now=now,
            refilled=refilled,
            # Each blob the run deletes is noted (for ``refilled``) just before it goes.
            on_deleted=lambda digest: self._deleted_lately.put(digest, now),
        )

    @asynccontextmanager
    async def dry_run(
        self, trigger: str = "manual", *, batch: int = 1_000
    ) -> AsyncIterator[DryRun]:
        """A dry run streamed: the report's lines are judged and yielded ``batch`` at a time,
        one repository's records in memory at a time (the same decisions ``run`` reports)."""
        async with self._lock:
            now = self._clock.now()
            run_id = f"{int(now)}-{secrets.token_hex(3)}"
            state = self._state.state()
            governing = functools.lru_cache(maxsize=4096)(state.governing)
            found = self._lines(governing, now)

            def take() -> list[Line]:
                return list(itertools.islice(found, batch))

            async def batches() -> AsyncIterator[list[Line]]:
                # Off the event loop: a large cache takes seconds to read, and pulls go on.
                while lines := await asyncio.to_thread(take):
                    yield lines

            self._metrics.retention_runs.labels(trigger, "dry-run").inc()
            try:
                yield DryRun(report_head(run_id, trigger, True, now, Outcome()), batches())
            finally:
                found.close()

    def _lines(self, governing: Governing, now: float) -> Generator[Line]:
        """Every image's report line, read from the store's summary (or a snapshot spilled)
        when the first is asked for."""
        source = dry_run_source(self._metadata, self.scratch)
        try:
            yield from report_lines(source, governing, now, self.cooling_period)
        finally:
            source.close()

    @asynccontextmanager
    async def _tier_run(self) -> AsyncIterator[None]:
        """Hold the tier's run lock for the block (``RETENTION_RUNNING`` while another
        replica holds it; a single node's is always free)."""
        if not self._state.begin_run():
            raise RegistryError(
                ErrorCode.RETENTION_RUNNING,
                "a retention run is in progress at another replica of the tier; try again "
                "when it has finished",
            )
        try:
            yield
        finally:
            self._state.end_run()

    async def run(self, *, dry_run: bool, trigger: str = "manual") -> Report:
        """Judge every cached image by its repository's policy and, unless ``dry_run``,
        evict the selected ones and collect what they leave unreferenced. Runs at this
        replica wait for each other; a run while another replica of the tier runs is
        ``RETENTION_RUNNING`` (a dry run deletes nothing: it needs no lock of the tier)."""
        async with self._lock:
            if dry_run:
                return (await self._run(dry_run, trigger))[0]
            async with self._tier_run():
                report, released = await self._run(dry_run, trigger)
            self._state.release(released, self._clock.now())
            return report

    async def _run(self, dry_run: bool, trigger: str) -> tuple[Report, dict[Digest, float]]:
        """The run of ``run``, under both locks; the report, and what it left to the tier.
        Judged a repository at a time from a snapshot (the dry run's judging), each
        repository's selected images evicted before the next is judged: memory holds one
        repository's records and what the run deleted, never the whole cache. A run stopped
        midway has deleted what it deleted; the next run judges the rest again."""
        now = self._clock.now()
        run_id = f"{int(now)}-{secrets.token_hex(3)}"
        governing = functools.lru_cache(maxsize=4096)(self._state.state().governing)
        report = Report(run_id, trigger, dry_run, now, ReportLines(self.scratch))
        self._metrics.retention_runs.labels(trigger, "dry-run" if dry_run else "run").inc()
        if dry_run:
            lines = self._lines(governing, now)
            try:
                while batch := await asyncio.to_thread(list, itertools.islice(lines, 1_000)):
                    report.images.extend(batch)
            finally:
                lines.close()
            return report, {}
        # Off the event loop: a large cache takes seconds to read, and pulls go on meanwhile.
        snapshot = await asyncio.to_thread(Snapshot, self._metadata, self.scratch)
        try:
            judged = repositories_judged(snapshot, governing, now, self.cooling_period)
            collector = self._collector(snapshot, trigger, run_id, now)
            await collector.collect_deferred()
            # Hosted garbage first: the snapshot of hosted links is the collector's own.
            await collector.collect_hosted(self.hosted_grace)
            while (repository := await asyncio.to_thread(next, judged, None)) is not None:
                report.images.extend(await _evicted(collector, repository))
            collector.forget_empty()
            collector.save_deferred()
        finally:
            snapshot.close()
        released = collector.released()
        await self._collected()
        report.outcome = collector.outcome
        self._reclaimed(collector.outcome)
        self._audit_run(report)
        return report, released

    def _audit_run(self, report: Report) -> None:
        """The audit line and the log line of a deleting run."""
        outcome = report.outcome
        self._audit.write(
            "run",
            run=report.run_id,
            trigger=report.trigger,
            images=report.images.count,
            evicted=len(outcome.evicted),
            spared=len(outcome.spared),
            bytes_freed=outcome.bytes_freed,
            hosted_unlinked=len(outcome.unlinked),
            hosted_reclaimed=outcome.reclaimed,
        )
        log.info(
            "retention run %s (%s): %d images, %d evicted, %d bytes freed",
            report.run_id,
            report.trigger,
            report.images.count,
            len(outcome.evicted),
            outcome.bytes_freed,
        )

    def _reclaimed(self, outcome: Outcome) -> None:
        """Tell ``on_reclaimed`` what the hosted collection freed, tenancy by tenancy."""
        if self.on_reclaimed is None:
            return
        for tenancy, freed in sorted(outcome.reclaimed.items()):
            try:
                self.on_reclaimed(tenancy, freed)
            except Exception:
                log.exception("on_reclaimed failed for tenancy %s", tenancy)

    async def evict_to(self, target: int) -> None:
        """Evict least recently pulled images (exempt tags respected; hosted images never)
        until the cache holds at most ``target`` bytes, or nothing evictable is left."""
        capacity = self.capacity
        if capacity is None:
            return
        async with self._lock:
            if capacity.total <= target:
                return
            if not self._state.begin_run():
                log.info("capacity eviction postponed: a retention run holds the tier")
                return
            try:
                released = await self._evict_to(capacity, target)
            finally:
                self._state.end_run()
            self._state.release(released, self._clock.now())

    async def sweep(self) -> None:
        """Delete the blobs this replica holds that another replica's run released and that
        nothing refers to any more (each replica of a tier deletes what it holds). Only this
        replica's runs are waited for: the sweep deletes nothing the shared metadata still
        refers to, so the replicas sweep at once, and beside another replica's run."""
        async with self._lock:
            now = self._clock.now()
            run_id = f"{int(now)}-{secrets.token_hex(3)}"
            snapshot = await asyncio.to_thread(Snapshot, self._metadata, self.scratch)
            try:
                collector = self._collector(snapshot, "tier", run_id, now)
                await collector.collect_deferred()
                collector.save_deferred()
            finally:
                snapshot.close()
            await self._collected()

    def follow_tier(self) -> Callable[[], Awaitable[None]]:
        """Sweep (on this loop) whenever another replica of the tier released blobs; returns
        what stops following. A single node has nothing to follow."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        def start() -> None:
            task = loop.create_task(self.sweep())
            tasks.add(task)
            task.add_done_callback(_finished(tasks))

        def notified() -> None:
            loop.call_soon_threadsafe(start)

        self._state.watch(notified)

        async def stop() -> None:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        return stop

    async def _evict_to(self, capacity: CapacityLimit, target: int) -> dict[Digest, float]:
        """The eviction of ``evict_to``, under both locks; what it left to the tier."""
        now = self._clock.now()
        run_id = f"{int(now)}-{secrets.token_hex(3)}"
        # Off the event loop: a large cache takes seconds to read, and pulls go on meanwhile.
        snapshot = await asyncio.to_thread(Snapshot, self._metadata, self.scratch)
        try:
            return await self._evict_from(snapshot, capacity, target, now, run_id)
        finally:
            snapshot.close()

    async def _evict_from(
        self, snapshot: Snapshot, capacity: CapacityLimit, target: int, now: float, run_id: str
    ) -> dict[Digest, float]:
        """``_evict_to`` from ``snapshot`` (least recently pulled first across the whole
        cache: this one holds every image's facts)."""
        listed = functools.partial(snapshot_images, self._metadata, snapshot, now)
        images = await asyncio.to_thread(lambda: tuple(listed()))
        state = self._state.state()
        governing = {i.repository: state.governing(i.repository)[0] for i in images}
        collector = self._collector(snapshot, "capacity", run_id, now)
        self._metrics.retention_runs.labels("capacity", "run").inc()
        await collector.collect_deferred()
        # Objects no cached manifest refers to go before any image does.
        await collector.collect_orphans(lambda: capacity.total <= target)
        # Hosted images are not a cache: nothing upstream could bring them back.
        cached = [i for i in images if not i.upstream.startswith(hosted_key(""))]
        for group in least_recently_pulled(cached, governing):
            if capacity.total <= target:
                break
            reason = (
                f"cache at {capacity.total} bytes, limit {capacity.max_size}: least "
                f"recently pulled (last used {iso(max(i.last_used for i in group))})"
            )
            await collector.evict(
                Decision(i, governing[i.repository].name, True, "capacity-lru", reason)
                for i in group
            )
        collector.forget_empty()
        collector.save_deferred()
        await self._collected()
        released = collector.released()
        if capacity.total > target:
            log.warning(
                "cache still at %d bytes (target %d): the rest is exempt or in use; "
                "pulls that do not fit are served uncached",
                capacity.total,
                target,
            )
        return released

    async def _collected(self) -> None:
        if self.after_collect is not None:
            await self.after_collect()

    async def run_periodically(self, interval: float) -> None:
        """The background job: a run every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run(dry_run=False, trigger="schedule")
            except RegistryError as exc:
                log.info("scheduled retention run skipped: %s", exc)
            except Exception:
                log.exception("scheduled retention run failed")

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log's events (runs and deletions with their reasons), oldest first."""
        return self._audit.read()

    def close(self) -> None:
        """Close the retention state's database connections (the audit log is its opener's
        to close: on a server, other services write to it too)."""
        self._state.close()


def _finished(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    """Forget a finished sweep (logging how it failed, if it did)."""

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("retention sweep of the tier's releases failed", exc_info=task.exception())

    return done


async def _evicted(collector: Collector, repository: list[Judged]) -> list[Line]:
    """Evict the images of one judged repository selected for deletion; its report lines
    (an image pulled while the run was deciding is kept, and its line says so)."""
    before = len(collector.outcome.spared)
    await collector.evict(decision for _, decision in repository if decision is not None)
    kept = {id(decision) for decision in collector.outcome.spared[before:]}
    if not kept:
        return [line for line, _ in repository]
    return [spared(line) if id(decision) in kept else line for line, decision in repository]
