"""A synchronous handle on the tier's PostgreSQL for the stores beside the metadata
(identity, login throttling, retention): a private loop thread, a small pool, calls that block
their caller for one round trip and fail as ``MetadataUnavailable``."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Coroutine, Iterator
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


class LockedTransactions:
    """Transactions of one thread's calls on ``database``, serialised across the tier by the
    advisory lock ``lock`` (taken inside each transaction); calls outside one run alone."""

    def __init__(self, database: SharedDatabase, lock: int) -> None:
        self._db = database
        self._lock = lock
        self._local = threading.local()

    @contextlib.contextmanager
    def transact(self) -> Iterator[None]:
        """A transaction of this thread's calls; nested calls join the outer one."""
        if getattr(self._local, "connection", None) is not None:
            yield
            return
        connection, transaction = self._db.call(self._begin())
        self._local.connection = connection
        try:
            yield
        except BaseException:
            self._local.connection = None
            self._db.call(self._end(connection, transaction, commit=False))
            raise
        self._local.connection = None
        self._db.call(self._end(connection, transaction, commit=True))

    def execute(self, method: str, query: str, *args: Any) -> Any:
        """Run ``query`` with asyncpg's ``method``, inside this thread's transaction if any."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            return self._db.run(method, query, *args)
        return self._db.call(getattr(connection, method)(query, *args))

    async def _begin(self) -> tuple[asyncpg.Connection, Any]:
        connection = await self._db.pool.acquire()
        transaction = connection.transaction()
        try:
            await transaction.start()
            await connection.execute("SELECT pg_advisory_xact_lock($1)", self._lock)
        except BaseException:
            await self._db.pool.release(connection)
            raise
        return connection, transaction

    async def _end(self, connection: asyncpg.Connection, transaction: Any, *, commit: bool) -> None:
        try:
            await (transaction.commit() if commit else transaction.rollback())
        finally:
            await self._db.pool.release(connection)
