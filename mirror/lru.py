"""A bounded in-memory map, least recently used dropped first (hot records, manifest bodies)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most ``limit`` units of ``weight`` (1 per entry by default); an entry heavier than
    ``limit // max_share`` is not kept at all, so one large value cannot flush the rest."""

    def __init__(
        self, limit: int, weight: Callable[[V], int] = lambda _v: 1, max_share: int = 1
    ) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._limit = limit
        self._weight = weight
        self._max_share = max_share
        self._total = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        """The value under ``key`` (now the most recently used), or ``None``."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key``, evicting the least recently used past the limit; a value
        heavier than its share of the limit is not kept."""
        self.drop(key)
        weight = self._weight(value)
        if weight > self._limit // self._max_share:
            return
        self._items[key] = value
        self._total += weight
        while self._total > self._limit:
            _, evicted = self._items.popitem(last=False)
            self._total -= self._weight(evicted)

    def drop(self, key: K) -> None:
        """Forget ``key`` (nothing happens if it is not kept)."""
        value = self._items.pop(key, None)
        if value is not None:
            self._total -= self._weight(value)
