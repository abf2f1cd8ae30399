"""The identity database's plumbing: typed get/put over diskcache, scans, memoised lookups."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from mirror.db.identity.records import (
    AccessPolicy,
    AuthToken,
    Group,
    PullThroughRule,
    Repository,
    Tenancy,
    User,
)
from mirror.db.pickled import disk_naming, stored_in
from mirror.errors import ErrorCode, RegistryError

T = TypeVar("T")

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


class RecordsDb:
    """Records keyed by tuples whose second element is the tenancy. Lookups on every request
    are memoised and forgotten on any write."""

    def __init__(self, directory: Path) -> None:
        self._db = diskcache.Cache(
            str(directory), disk=_DISK, eviction_policy="none", size_limit=2**40
        )
        self._memo: dict[tuple[Any, ...], Any] = {}

    def close(self) -> None:
        self._db.close()

    def keys(self) -> Iterator[tuple[Any, ...]]:
        """Every key (for tests and diagnostics)."""
        yield from iter(self._db)

    # Plumbing ---------------------------------------------------------------------------

    def _get(self, key: tuple[str, ...], kind: type[T]) -> T | None:
        value = self._db.get(key)
        return value if isinstance(value, kind) else None

    def _put(self, key: tuple[str, ...], value: object) -> None:
        self._db.set(key, value)
        self._memo.clear()

    def _delete(self, key: tuple[str, ...]) -> None:
        self._db.delete(key)
        self._memo.clear()

    def _scan(self, kind: str, tenancy: str, cls: type[T]) -> list[T]:
        found = [
            value
            for key in iter(self._db)
            if isinstance(key, tuple) and key[:2] == (kind, tenancy)
            if isinstance(value := self._db.get(key), cls)
        ]
        return sorted(found, key=repr)

    def _memoised(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        if key not in self._memo:
            self._memo[key] = compute()
        value: T = self._memo[key]
        return value

    def tenancy(self, name: str) -> Tenancy | None:
        return self._memoised(("tenancy", name), lambda: self._get(("tenancy", name), Tenancy))

    def require_tenancy(self, name: str) -> Tenancy:
        found = self.tenancy(name)
        if found is None:
            raise unknown("tenancy", tenancy=name)
        return found
