"""A synchronous handle on the tier's PostgreSQL for the stores beside the metadata
(identity, login throttling, retention): a private loop thread, a small pool, calls that block
their caller for one round trip and fail as ``MetadataUnavailable``."""

from __future__ import annotations

import secrets
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg

from mirror.db.postgres.bridge import LoopThread
from mirror.db.postgres.connect import PostgresSettings, open_pool
from mirror.db.roles import MetadataUnavailable

T = TypeVar("T")

# What a call to the database may fail with; each becomes ``MetadataUnavailable``.
FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class SharedDatabase:
    """The pool of one store of this process; ``open`` connects, ``close`` disconnects.
    The schema is migrated by whoever opens the metadata store first (``mirror db migrate``
    or the app's start)."""

    def __init__(self, settings: PostgresSettings, origin: str) -> None:
        self.settings = settings
        self.origin = origin
        self.thread = LoopThread(name=f"{origin}-db")
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def open(cls, settings: PostgresSettings, role: str) -> SharedDatabase:
        """Connect; ``role`` names the store in the server's ``application_name``."""
        database = cls(settings, f"mirror-{role}-{secrets.token_hex(6)}")
        try:
            database.call(database._connect())
        except BaseException:
            database.thread.close()
            raise
        return database

    async def _connect(self) -> None:
        self._pool = await open_pool(self.settings, self.origin)

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool (only valid on the loop thread)."""
        assert self._pool is not None
        return self._pool

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread; a database failure is ``MetadataUnavailable``."""
        try:
            return self.thread.call(coro, self.settings.call_timeout)
        except FAILURES as exc:
            raise MetadataUnavailable(f"metadata database: {type(exc).__name__}: {exc}") from exc

    def run(self, method: str, query: str, *args: Any) -> Any:
        """One statement on a pooled connection (``method``: execute, fetch, fetchval, ...)."""
        return self.call(self._on_pool(method, query, *args))

    async def _on_pool(self, method: str, query: str, *args: Any) -> Any:
        async with self.pool.acquire() as connection:
            return await getattr(connection, method)(query, *args)

    def close(self) -> None:
        """Close the pool and the loop thread; closing again does nothing."""
        if self.thread.closed:
            return
        try:
            if self._pool is not None:
                self.thread.call(self._pool.close(), self.settings.call_timeout)
        finally:
            self.thread.close()
