"""Coalesce concurrent identical upstream calls into one (manifests, HEADs, tag lookups)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """At most one call per key runs at a time; concurrent callers share its result or error.

    The call runs in its own task, so a caller that is cancelled (a client that went away)
    does not cancel it for the others.
    """

    def __init__(self) -> None:
        self._calls: dict[Hashable, asyncio.Task[T]] = {}

    def joined(self, key: Hashable) -> bool:
        """Whether a call for ``key`` is in flight now."""
        return key in self._calls

    async def do(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` unless one for ``key`` is in flight, and return its result."""
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._calls[key] = task
            task.add_done_callback(lambda _t: self._calls.pop(key, None))
        return await asyncio.shield(task)
