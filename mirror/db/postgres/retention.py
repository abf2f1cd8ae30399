"""The shared retention state of a tier in PostgreSQL (migration 0005): the policy state and
the unreferenced hosted links as JSON rows of ``retention_state``, and the tier's run lock.

A transaction holds one connection and a transaction-level advisory lock, so two replicas'
policy edits never interleave. A run holds the session-level ``pg_try_advisory_lock`` on a
connection of its own until it ends (a replica that dies mid-run releases it with its
connection), so one run at a time happens across the tier.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import asyncpg

from mirror.db.postgres.shared import SharedDatabase
from mirror.db.retention import POLICIES, UNREFERENCED, Attachment, PolicyState
from mirror.retention.policy import RetentionPolicy

# Advisory lock keys: policy transactions ("retst") and runs ("retrun").
STATE_LOCK = 0x7265747374
RUN_LOCK = 0x72657472756E

_GET = "SELECT body FROM retention_state WHERE key = $1"
_SET = (
    "INSERT INTO retention_state VALUES ($1, $2::jsonb)"
    " ON CONFLICT (key) DO UPDATE SET body = EXCLUDED.body"
)


def encode(key: str, value: Any) -> Any:
    """The JSON of the value stored under ``key``."""
    if key == POLICIES and isinstance(value, PolicyState):
        return {
            "policies": [p.as_json() for p in value.policies],
            "attachments": [[r, a.policy, a.since] for r, a in value.attachments],
        }
    if key == UNREFERENCED and isinstance(value, dict):
        return [[u, r, d, since] for (u, r, d), since in sorted(value.items())]
    raise ValueError(f"no shared retention value {key!r}")


def decode(key: str, data: Any) -> Any:
    """The value ``encode`` made ``data`` from."""
    if key == POLICIES:
        policies = tuple(
            RetentionPolicy(**(p | {"exempt_tags": tuple(p["exempt_tags"])}))
            for p in data["policies"]
        )
        attachments = tuple((r, Attachment(name, since)) for r, name, since in data["attachments"])
        return PolicyState(policies, attachments)
    if key == UNREFERENCED:
        return {(u, r, d): since for u, r, d, since in data}
    raise ValueError(f"no shared retention value {key!r}")


class PostgresRetention:
    """The retention state a tier's replicas share (``mirror.db.retention.SharedState``)."""

    def __init__(self, database: SharedDatabase) -> None:
        self._db = database
        self._local = threading.local()
        self._run: asyncpg.Connection | None = None
        self._run_guard = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        body = self._execute("fetchval", _GET, key)
        return default if body is None else decode(key, json.loads(body))

    def set(self, key: str, value: Any) -> bool:
        """Store ``value`` under ``key``."""
        self._execute("execute", _SET, key, json.dumps(encode(key, value)))
        return True

    @contextlib.contextmanager
    def transact(self) -> Iterator[None]:
        """A transaction of this thread's calls, serialised across the tier."""
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

    async def _begin(self) -> tuple[asyncpg.Connection, Any]:
        connection = await self._db.pool.acquire()
        transaction = connection.transaction()
        try:
            await transaction.start()
            await connection.execute("SELECT pg_advisory_xact_lock($1)", STATE_LOCK)
        except BaseException:
            await self._db.pool.release(connection)
            raise
        return connection, transaction

    async def _end(self, connection: asyncpg.Connection, transaction: Any, *, commit: bool) -> None:
        try:
            await (transaction.commit() if commit else transaction.rollback())
        finally:
            await self._db.pool.release(connection)

    def _execute(self, method: str, query: str, *args: Any) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            return self._db.run(method, query, *args)
        return self._db.call(getattr(connection, method)(query, *args))

    # The run lock -----------------------------------------------------------------------

    def begin_run(self) -> bool:
        """Take the tier's run lock on a connection kept until ``end_run``; ``False`` when
        another replica (or this one) holds it."""
        with self._run_guard:
            if self._run is not None:
                return False
            self._run = self._db.call(self._try_lock())
            return self._run is not None

    async def _try_lock(self) -> asyncpg.Connection | None:
        connection = await self._db.pool.acquire()
        try:
            taken = await connection.fetchval("SELECT pg_try_advisory_lock($1)", RUN_LOCK)
        except BaseException:
            await self._db.pool.release(connection)
            raise
        if taken:
            return connection
        await self._db.pool.release(connection)
        return None

    def end_run(self) -> None:
        """Release the run lock (a lost connection released it already)."""
        with self._run_guard:
            connection, self._run = self._run, None
        if connection is not None:
            self._db.call(self._unlock(connection))

    async def _unlock(self, connection: asyncpg.Connection) -> None:
        try:
            await connection.execute("SELECT pg_advisory_unlock($1)", RUN_LOCK)
        finally:
            await self._db.pool.release(connection)

    def close(self) -> None:
        """Release a run lock still held, and disconnect."""
        with contextlib.suppress(Exception):
            self.end_run()
        self._db.close()
