"""A byte stream that releases what it holds however it ends.

A plain async generator closed before its first iteration never runs its ``finally``; a blob
stream holds a lease (so retention leaves the blob alone) and an open file from the moment it
is handed out, so its release must not depend on being iterated.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import Any


class Guarded(AsyncGenerator[bytes, None]):
    """Wraps ``inner``; ``release`` runs exactly once: at the end, on an error, or on close."""

    def __init__(
        self, inner: AsyncGenerator[bytes, None], release: Callable[[], Awaitable[None]]
    ) -> None:
        self._inner = inner
        self._release: Callable[[], Awaitable[None]] | None = release

    async def _released(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            await release()

    async def asend(self, value: None) -> bytes:
        """The next piece of the body; the lease is released when the body ends or fails."""
        try:
            return await self._inner.asend(value)
        except BaseException:
            await self._released()
            raise

    async def athrow(
        self,
        typ: Any,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> bytes:
        """Throw into the body; the lease is released when that ends it."""
        try:
            return await self._inner.athrow(typ, val, tb)
        except BaseException:
            await self._released()
            raise

    async def aclose(self) -> None:
        """Close the body and release the lease."""
        try:
            await self._inner.aclose()
        finally:
            await self._released()
