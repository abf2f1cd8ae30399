"""The identity database's plumbing: typed get/put over diskcache, scans, memoised lookups."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import diskcache

from mirror.db.identity.records import (
    AccessPolicy,
    AuthToken,
    Group,
    PullThroughRule,
    Repository,
    Tenancy,
    User,
    is_tenancy_name,
)
from mirror.db.pickled import disk_naming, stored_in
from mirror.errors import ErrorCode, RegistryError
from mirror.lru import Lru

T = TypeVar("T")

# Lookups remembered between writes; names come from anonymous requests, so the memo is bounded.
MEMO_SIZE = 10_000

# Pickles name classes by module and name: the records keep the names they were first stored
# under (``mirror.identity.records``; access policies as ``Policy``).
_DISK = disk_naming(
    stored_in(
        "mirror.identity.records",
        Tenancy,
        User,
        Group,
        AuthToken,
        Repository,
        PullThroughRule,
        renamed={AccessPolicy: "Policy"},
    )
)


def unknown(kind: str, **detail: str) -> RegistryError:
    """``RESOURCE_UNKNOWN`` for a missing record."""
    return RegistryError(ErrorCode.RESOURCE_UNKNOWN, f"{kind} unknown", detail=detail)


def exists(kind: str, **detail: str) -> RegistryError:
    """``RESOURCE_EXISTS`` for a record created twice."""
    return RegistryError(ErrorCode.RESOURCE_EXISTS, f"{kind} already exists", detail=detail)


class Records(Protocol):
    """The calls the identity store makes of its database: the embedded ``diskcache.Cache``
    of a single node, or ``mirror.db.postgres.identity.PostgresRecords`` of a tier."""

    def get(self, key: Any, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""

    def set(self, key: Any, value: Any) -> bool:
        """Store ``value`` under ``key``."""

    def delete(self, key: Any) -> bool:
        """Forget ``key``."""

    def __iter__(self) -> Iterator[Any]:
        """Every key."""

    def transact(self) -> AbstractContextManager[Any]:
        """A transaction of the calls made inside it."""

    def close(self) -> None:
        """Close the database."""


@runtime_checkable
class SharedRecords(Records, Protocol):
    """A database other processes write too: it says when they changed something."""

    def watch(self, on_change: Callable[[], None]) -> Callable[[], bool]:
        """Call ``on_change`` on another process's change; returns whether lookups may be
        memoised now."""


class RecordsDb:
    """Records keyed by tuples whose second element is the tenancy. Lookups on every request
    are memoised (at most ``memo_size``, least recently used dropped) and forgotten on any
    write (of another replica too, with shared records); a name that cannot exist is answered
    without a lookup and never memoised."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        memo_size: int = MEMO_SIZE,
        records: Records | None = None,
    ) -> None:
        if records is None:
            if directory is None:
                raise ValueError("an identity store needs a directory or its records")
            records = diskcache.Cache(
                str(directory), disk=_DISK, eviction_policy="none", size_limit=2**40
            )
        self._db: Records = records
        self._memo_size = memo_size
        # Values are wrapped in a 1-tuple so a remembered ``None`` (no such record) is a hit.
        self._memo: Lru[tuple[Any, ...], tuple[Any]] = Lru(memo_size)
        # Moves on at every forget: a lookup that raced one is not remembered.
        self._generation = 0
        self._memo_live: Callable[[], bool] = lambda: True
        if isinstance(records, SharedRecords):
            self._memo_live = records.watch(self._forget)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def transaction(self) -> AbstractContextManager[Any]:
        """A transaction of the calls made inside it (serialised across a tier's replicas);
        the steps inside that open their own join it."""
        return self._db.transact()

    @property
    def memo_entries(self) -> int:
        """How many lookups are remembered now (bounded by ``memo_size``)."""
        return len(self._memo)

    def keys(self) -> Iterator[tuple[Any, ...]]:
        """Every key (for tests and diagnostics)."""
        yield from iter(self._db)

    # Plumbing ---------------------------------------------------------------------------

    def _get(self, key: tuple[str, ...], kind: type[T]) -> T | None:
        value = self._db.get(key)
        return value if isinstance(value, kind) else None

    def _put(self, key: tuple[str, ...], value: object) -> None:
        self._db.set(key, value)
        self._forget()

    def _delete(self, key: tuple[str, ...]) -> None:
        self._db.delete(key)
        self._forget()

    def _forget(self) -> None:
        self._generation += 1
        self._memo = Lru(self._memo_size)

    def _scan(self, kind: str, tenancy: str, cls: type[T]) -> list[T]:
        found = [
            value
            for key in iter(self._db)
            if isinstance(key, tuple) and key[:2] == (kind, tenancy)
            if isinstance(value := self._db.get(key), cls)
        ]
        return sorted(found, key=repr)

    def _memoised(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        hit = self._memo.get(key)
        if hit is not None:
            remembered: T = hit[0]
            return remembered
        generation = self._generation
        value = compute()
        if generation == self._generation and self._memo_live():
            self._memo.put(key, (value,))
        return value

    def tenancy(self, name: str) -> Tenancy | None:
        """The tenancy ``name``; ``None`` when unknown or not a tenancy name at all."""
        if not is_tenancy_name(name):
            return None
        return self._memoised(("tenancy", name), lambda: self._get(("tenancy", name), Tenancy))

    def require_tenancy(self, name: str) -> Tenancy:
        """The tenancy named ``name``; ``RESOURCE_UNKNOWN`` if there is none."""
        found = self.tenancy(name)
        if found is None:
            raise unknown("tenancy", tenancy=name)
        return found
