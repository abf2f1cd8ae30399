"""Per-tenancy quotas of hosted repositories: stored bytes and repository count.

Usage is derived from what is persisted, so it is exact and survives a restart: a tenancy
stores the distinct objects (blobs and manifests) that at least one of its hosted repositories
links and that are still in the blob store, each counted once per tenancy however many of its
repositories link it; its repositories are those it has records or links for. ``load``
rebuilds that from the metadata store at start and after the collector ran; between loads,
every link, unlink and repository creation updates it in place.

A check and the update it admits happen without an ``await`` between them, and bytes in
flight (an upload being installed, a manifest being stored) are reserved first, so concurrent
pushes cannot overshoot a limit together.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest

BYTES = "bytes"
REPOSITORIES = "repositories"


@dataclass(frozen=True, slots=True)
class Limits:
    """A tenancy's limits; ``None`` is unlimited."""

    bytes: int | None = None
    repositories: int | None = None

    def as_json(self) -> dict[str, int | None]:
        """``{"bytes": ..., "repositories": ...}``."""
        return {BYTES: self.bytes, REPOSITORIES: self.repositories}


@dataclass(frozen=True, slots=True)
class Usage:
    """What a tenancy stores, against its limits."""

    tenancy: str
    bytes: int
    repositories: int
    limits: Limits

    def as_json(self) -> dict[str, object]:
        """The admin API's answer."""
        return {
            "tenancy": self.tenancy,
            "used": {BYTES: self.bytes, REPOSITORIES: self.repositories},
            "limits": self.limits.as_json(),
        }


class QuotaMetrics(Protocol):
    """Where usage, limits and refusals are published (labels: tenancy, quota)."""

    def publish(self, usage: Usage) -> None:
        """Set the gauges of ``usage.tenancy``."""
        ...

    def refused(self, tenancy: str, quota: str) -> None:
        """Count one refused push."""
        ...

    def forget(self, tenancy: str) -> None:
        """Drop the series of a deleted tenancy."""
        ...


def exceeded(tenancy: str, quota: str, used: int, adding: int, limit: int) -> RegistryError:
    """The 403 ``DENIED`` of a push over a quota, naming the quota, its use and its limit."""
    what = "stored bytes" if quota == BYTES else "repository count"
    return RegistryError(
        ErrorCode.DENIED,
        f"tenancy {tenancy} is over its {what} quota: {used} used, "
        f"{adding} more would pass the limit of {limit}",
        detail={"tenancy": tenancy, "quota": quota, "used": used, "adding": adding, "limit": limit},
    )


@dataclass
class _Tenancy:
    """One tenancy's usage: who links each object, its size, the repositories, reservations."""

    holders: dict[Digest, set[str]] = field(default_factory=lambda: defaultdict(set))
    sizes: dict[Digest, int] = field(default_factory=dict)
    repositories: set[str] = field(default_factory=set)
    reserved: int = 0
    # The sum of ``sizes`` (kept, not summed on every check).
    stored: int = 0

    def add(self, repo: str, digest: Digest, size: int) -> None:
        self.holders[digest].add(repo)
        if digest not in self.sizes:
            self.sizes[digest] = size
            self.stored += size

    def drop(self, repo: str, digest: Digest) -> None:
        self.holders[digest].discard(repo)
        if not self.holders[digest]:
            del self.holders[digest]
            self.stored -= self.sizes.pop(digest, 0)


class Held(Protocol):
    """Bytes held for one push in flight (a ``with`` block gives them back unless committed)."""

    def commit(self, repo: str, digest: Digest) -> None:
        """The object is stored and linked to ``repo``: count it, free the reservation."""
        ...

    def release(self) -> None:
        """Give the reserved bytes back (once)."""
        ...

    def __enter__(self) -> Held: ...

    def __exit__(self, *_: object) -> None: ...


class TenancyQuotas(Protocol):
    """Every tenancy's hosted usage and limits, and the admission of pushes against them: one
    node's (``Quotas``, in memory) or a tier's (``mirror.hosted.tier_quota.TierQuotas``)."""

    default: Limits

    async def load(
        self,
        links: Callable[[], Iterable[tuple[str, str, Digest]]],
        size_of: Callable[[Digest], Awaitable[int | None]],
        repositories: Callable[[], Iterable[tuple[str, str]]] = ...,
    ) -> None:
        """Rebuild (or complete) usage from persisted facts."""
        ...

    def usage(self, tenancy: str) -> Usage:
        """What ``tenancy`` stores now, and its limits."""
        ...

    def tenancies(self) -> list[str]:
        """The tenancies that store something or have a limit of their own."""
        ...

    def admit_repository(self, tenancy: str, repo: str) -> None:
        """Count a new repository; 403 ``DENIED`` over the repository quota."""
        ...

    def reserve(self, tenancy: str, repo: str, digest: Digest, size: int) -> Held:
        """Hold ``size`` bytes for ``digest`` on its way into ``repo``; 403 ``DENIED``."""
        ...

    def unlinked(self, tenancy: str, repo: str, digest: Digest) -> None:
        """``repo`` no longer links ``digest``."""
        ...

    def forget_repository(self, tenancy: str, repo: str) -> None:
        """A deleted repository leaves the count."""
        ...

    def forget_tenancy(self, tenancy: str) -> None:
        """A deleted tenancy: its usage, override and metric series go."""
        ...

    def limits(self, tenancy: str) -> Limits:
        """The override for ``tenancy``, else the default."""
        ...

    def set_limits(self, tenancy: str, limits: Limits | None) -> Limits:
        """Set (``None``: remove) ``tenancy``'s override."""
        ...

    def publish_all(self) -> None:
        """Bring every tenancy's gauges up to date (before a scrape)."""
        ...

    def close(self) -> None:
        """Release what the quotas hold open."""
        ...


class Reservation:
    """Bytes held for a push in flight; ``commit`` turns them into a link, ``release`` (or
    leaving the ``with`` block without commit) gives them back."""

    def __init__(self, quotas: Quotas, tenancy: str, size: int) -> None:
        self._quotas, self._tenancy, self._size = quotas, tenancy, size
        self._open = True

    def commit(self, repo: str, digest: Digest) -> None:
        """The object is stored and linked to ``repo``: count it, free the reservation."""
        self.release()
        self._quotas.linked(self._tenancy, repo, digest, self._size)

    def release(self) -> None:
        """Give the reserved bytes back (once)."""
        if self._open:
            self._open = False
            self._quotas.unreserve(self._tenancy, self._size)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class Quotas:
    """Every tenancy's hosted usage and limits: ``default`` unless an operator set an override,
    kept in ``overrides`` (a JSON file)."""

    def __init__(
        self, default: Limits, overrides: Path, metrics: QuotaMetrics | None = None
    ) -> None:
        self.default = default
        self._path = Path(overrides)
        self._metrics = metrics
        self._overrides = _read_overrides(self._path)
        self._tenancies: dict[str, _Tenancy] = defaultdict(_Tenancy)

    # Usage ------------------------------------------------------------------------------

    async def load(
        self,
        links: Callable[[], Iterable[tuple[str, str, Digest]]],
        size_of: Callable[[Digest], Awaitable[int | None]],
        repositories: Callable[[], Iterable[tuple[str, str]]] = lambda: (),
    ) -> None:
        """Rebuild usage from persisted facts: ``links()`` (tenancy, repo, digest), the stored
        size of each object (``None``: reclaimed, not counted) and ``repositories()``.

        Sizes are asked first; then links are read again and the usage replaced with no
        ``await`` between, so a push that linked something meanwhile (counted in place, with
        its size) is neither lost nor counted twice."""
        sizes: dict[Digest, int | None] = {}
        for _, _, digest in list(links()):
            if digest not in sizes:
                sizes[digest] = await size_of(digest)
        fresh: dict[str, _Tenancy] = defaultdict(_Tenancy)
        for tenancy, repo, digest in links():
            usage = fresh[tenancy]
            usage.repositories.add(repo)
            size = sizes[digest] if digest in sizes else self._known_size(tenancy, digest)
            if size is not None:
                usage.add(repo, digest, size)
        for tenancy, repo in repositories():
            fresh[tenancy].repositories.add(repo)
        for tenancy, old in self._tenancies.items():
            fresh[tenancy].reserved = old.reserved
        before = set(self._tenancies)
        self._tenancies = fresh
        for tenancy in before | set(fresh):
            self._publish(tenancy)

    def _known_size(self, tenancy: str, digest: Digest) -> int | None:
        found = self._tenancies.get(tenancy)
        return found.sizes.get(digest) if found is not None else None

    def usage(self, tenancy: str) -> Usage:
        """What ``tenancy`` stores now, and its limits."""
        found = self._tenancies.get(tenancy) or _Tenancy()
        return Usage(tenancy, found.stored, len(found.repositories), self.limits(tenancy))

    def tenancies(self) -> list[str]:
        """The tenancies that store something or have a limit of their own."""
        return sorted(set(self._tenancies) | set(self._overrides))

    # Checks -----------------------------------------------------------------------------

    def admit_repository(self, tenancy: str, repo: str) -> None:
        """Count a new repository of ``tenancy``; 403 ``DENIED`` over its repository quota."""
        self._check_repository(tenancy, repo)
        self._tenancies[tenancy].repositories.add(repo)
        self._publish(tenancy)

    def _check_repository(self, tenancy: str, repo: str) -> None:
        repositories = self._tenancies[tenancy].repositories
        limit = self.limits(tenancy).repositories
        if repo not in repositories and limit is not None and len(repositories) + 1 > limit:
            self._refuse(tenancy, REPOSITORIES)
            raise exceeded(tenancy, REPOSITORIES, len(repositories), 1, limit)

    def reserve(self, tenancy: str, repo: str, digest: Digest, size: int) -> Reservation:
        """Hold ``size`` bytes for ``digest`` on its way into ``repo`` (nothing when the
        tenancy stores it already); 403 ``DENIED`` over either quota, and then nothing is
        counted."""
        self._check_repository(tenancy, repo)
        usage = self._tenancies[tenancy]
        adding = 0 if digest in usage.sizes else size
        limit = self.limits(tenancy).bytes
        used = usage.stored + usage.reserved
        if adding and limit is not None and used + adding > limit:
            self._refuse(tenancy, BYTES)
            raise exceeded(tenancy, BYTES, used, adding, limit)
        usage.reserved += adding
        self.admit_repository(tenancy, repo)
        return Reservation(self, tenancy, adding)

    def unreserve(self, tenancy: str, size: int) -> None:
        """Give back bytes a reservation held."""
        self._tenancies[tenancy].reserved -= size

    # Updates ----------------------------------------------------------------------------

    def linked(self, tenancy: str, repo: str, digest: Digest, size: int) -> None:
        """``repo`` of ``tenancy`` now links stored object ``digest`` of ``size`` bytes."""
        usage = self._tenancies[tenancy]
        usage.repositories.add(repo)
        usage.add(repo, digest, size)
        self._publish(tenancy)

    def unlinked(self, tenancy: str, repo: str, digest: Digest) -> None:
        """``repo`` no longer links ``digest``: the tenancy stops counting it with its last
        link."""
        usage = self._tenancies.get(tenancy)
        if usage is None or digest not in usage.holders:
            return
        usage.drop(repo, digest)
        self._publish(tenancy)

    def forget_repository(self, tenancy: str, repo: str) -> None:
        """A deleted repository: its links and its place in the count go."""
        usage = self._tenancies.get(tenancy)
        if usage is None:
            return
        for digest in [d for d, repos in usage.holders.items() if repo in repos]:
            self.unlinked(tenancy, repo, digest)
        usage.repositories.discard(repo)
        self._publish(tenancy)

    def forget_tenancy(self, tenancy: str) -> None:
        """A deleted tenancy: its usage, its override and its metric series go."""
        self._tenancies.pop(tenancy, None)
        if self._overrides.pop(tenancy, None) is not None:
            _write_overrides(self._path, self._overrides)
        if self._metrics is not None:
            self._metrics.forget(tenancy)

    # Limits -----------------------------------------------------------------------------

    def limits(self, tenancy: str) -> Limits:
        """The override an operator set for ``tenancy``, else the default."""
        return self._overrides.get(tenancy, self.default)

    def set_limits(self, tenancy: str, limits: Limits | None) -> Limits:
        """Set (``None``: remove) ``tenancy``'s override; its limits from now on."""
        if limits is None:
            self._overrides.pop(tenancy, None)
        else:
            self._overrides[tenancy] = limits
        _write_overrides(self._path, self._overrides)
        self._publish(tenancy)
        return self.limits(tenancy)

    def publish_all(self) -> None:
        """Usage is published as it changes here: nothing to bring up to date."""

    def close(self) -> None:
        """Nothing is held open."""

    def _publish(self, tenancy: str) -> None:
        if self._metrics is not None:
            self._metrics.publish(self.usage(tenancy))

    def _refuse(self, tenancy: str, quota: str) -> None:
        if self._metrics is not None:
            self._metrics.refused(tenancy, quota)


def _read_overrides(path: Path) -> dict[str, Limits]:
    """The overrides file (absent: none); a malformed entry is refused at start."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of tenancy limits")
    return {t: Limits(v.get(BYTES), v.get(REPOSITORIES)) for t, v in raw.items()}


def _write_overrides(path: Path, overrides: dict[str, Limits]) -> None:
    """Replace the overrides file atomically (temp file, fsync, rename)."""
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "w") as out:
        json.dump({t: lim.as_json() for t, lim in sorted(overrides.items())}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)
