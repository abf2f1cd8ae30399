"""Hosted quotas of a regional tier: the rules of ``Quotas`` with usage, limits and
reservations in the shared PostgreSQL (``mirror.db.postgres.quota``), so every replica
admits against the same count and answers the same usage.

A reservation is a row held until its push commits or fails; a replica that dies holding one
frees it with its connections (PostgreSQL sees them close), a reservation nobody freed lapses
after ``timeout`` seconds (the upload timeout).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from mirror.clock import Clock
from mirror.db.postgres.quota import PostgresQuotaRecords, StoredUsage
from mirror.db.roles import MetadataUnavailable
from mirror.hosted.quota import (
    BYTES,
    REPOSITORIES,
    Limits,
    QuotaMetrics,
    Usage,
    exceeded,
)
from mirror.oci.digest import Digest

log = logging.getLogger(__name__)


class TierReservation:
    """A reservation row of the tier (``None``: the tenancy stores the object already)."""

    def __init__(self, quotas: TierQuotas, reservation: int | None) -> None:
        self._quotas, self._id = quotas, reservation
        self._open = True

    def commit(self, repo: str, digest: Digest) -> None:
        """The object is stored and linked: its size is recorded, the reservation goes."""
        self._open = False
        if self._id is not None:
            self._quotas.records.commit(self._id)

    def release(self) -> None:
        """Give the reserved bytes back (once; a database failure leaves the row to lapse)."""
        if not self._open:
            return
        self._open = False
        if self._id is None:
            return
        try:
            self._quotas.records.release(self._id)
        except MetadataUnavailable as exc:
            log.warning("quota reservation %d left to lapse: %s", self._id, exc)

    def __enter__(self) -> TierReservation:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class TierQuotas:
    """Every tenancy's hosted usage and limits for the whole tier: ``default`` unless an
    operator set a tenancy's own limits (kept in the shared database)."""

    def __init__(
        self,
        default: Limits,
        records: PostgresQuotaRecords,
        clock: Clock,
        *,
        timeout: float,
        metrics: QuotaMetrics | None = None,
    ) -> None:
        self.default = default
        self.records = records
        self._clock = clock
        self._timeout = timeout
        self._metrics = metrics
        self._published: set[str] = set()

    async def load(
        self,
        links: Callable[[], Iterable[tuple[str, str, Digest]]],
        size_of: Callable[[Digest], Awaitable[int | None]],
        repositories: Callable[[], Iterable[tuple[str, str]]] = lambda: (),
    ) -> None:
        """Complete the shared facts from this replica's: the size of each linked object it
        holds whose size is not recorded yet (content pushed before the tier counted it), and
        the repository records. The links themselves are already the tier's."""
        sizes: dict[str, int] = {}
        for text in self.records.unsized():
            size = await size_of(Digest.parse(text))
            if size is not None:
                sizes[text] = size
        self.records.record_sizes(sizes)
        self.records.add_repositories(sorted(set(repositories())))
        self.publish_all()

    def usage(self, tenancy: str) -> Usage:
        """What ``tenancy`` stores now across the tier, and its limits."""
        (found,) = self.records.usage([tenancy])
        return self._usage(found)

    def _usage(self, found: StoredUsage) -> Usage:
        limits = self.default if found.limits is None else Limits(*found.limits)
        return Usage(found.tenancy, found.bytes, found.repositories, limits)

    def tenancies(self) -> list[str]:
        """The tenancies that store something or have a limit of their own."""
        return self.records.tenancies()

    def admit_repository(self, tenancy: str, repo: str) -> None:
        """Count a new repository of ``tenancy``; 403 ``DENIED`` over its repository quota."""
        self._admit(tenancy, repo, None)

    def reserve(self, tenancy: str, repo: str, digest: Digest, size: int) -> TierReservation:
        """Hold ``size`` bytes for ``digest`` on its way into ``repo`` (nothing when the
        tenancy stores it already); 403 ``DENIED`` over either quota."""
        return TierReservation(self, self._admit(tenancy, repo, (str(digest), size)))

    def _admit(self, tenancy: str, repo: str, object_: tuple[str, int] | None) -> int | None:
        default = (self.default.bytes, self.default.repositories)
        now = self._clock.now()
        answer = self.records.admit(tenancy, repo, object_, default, now, self._timeout)
        if answer.quota is None:
            return answer.reservation
        assert answer.limit is not None
        if self._metrics is not None:
            self._metrics.refused(tenancy, answer.quota)
        quota = BYTES if answer.quota == BYTES else REPOSITORIES
        raise exceeded(tenancy, quota, answer.used, answer.adding, answer.limit)

    def unlinked(self, tenancy: str, repo: str, digest: Digest) -> None:
        """Nothing to do: usage follows the shared links."""

    def forget_repository(self, tenancy: str, repo: str) -> None:
        """A deleted repository leaves the count."""
        self.records.forget_repository(tenancy, repo)

    def forget_tenancy(self, tenancy: str) -> None:
        """A deleted tenancy: its repositories, limits and metric series go."""
        self.records.forget_tenancy(tenancy)
        self._published.discard(tenancy)
        if self._metrics is not None:
            self._metrics.forget(tenancy)

    def limits(self, tenancy: str) -> Limits:
        """The limits an operator set for ``tenancy``, else the default."""
        return self.usage(tenancy).limits

    def set_limits(self, tenancy: str, limits: Limits | None) -> Limits:
        """Set (``None``: remove) ``tenancy``'s own limits, for every replica."""
        stored = None if limits is None else (limits.bytes, limits.repositories)
        self.records.set_limits(tenancy, stored)
        return self.limits(tenancy)

    def publish_all(self) -> None:
        """Set every tenancy's gauges from the shared count (before a scrape), and drop the
        series of tenancies that are gone."""
        if self._metrics is None:
            return
        names = self.tenancies()
        for found in self.records.usage(names):
            self._metrics.publish(self._usage(found))
        for gone in self._published - set(names):
            self._metrics.forget(gone)
        self._published = set(names)

    def close(self) -> None:
        """Close the connection pool."""
        self.records.close()
