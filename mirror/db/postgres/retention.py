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
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from mirror.db.postgres.connect import Listener
from mirror.db.postgres.shared import LockedTransactions, SharedDatabase
from mirror.db.retention import POLICIES, UNREFERENCED, Attachment, PolicyState
from mirror.retention.policy import RetentionPolicy

# Advisory lock keys: policy transactions ("retst") and runs ("retrun").
STATE_LOCK = 0x7265747374
RUN_LOCK = 0x72657472756E

CHANNEL = "mirror_retention"
# Seconds a released row is kept for replicas that were down when it was written.
RELEASED_KEPT = 7 * 24 * 3600.0

_RELEASE = (
    "INSERT INTO retention_released (digest, since) SELECT * FROM unnest($1::text[], $2::float8[])"
)
_PRUNE = "DELETE FROM retention_released WHERE since < $1"
_RELEASED = "SELECT id, digest, since FROM retention_released WHERE id > $1 ORDER BY id"
_NOTIFY = "SELECT pg_notify($1, $2)"
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
        self._tx = LockedTransactions(database, STATE_LOCK)
        self._run: asyncpg.Connection | None = None
        self._run_guard = threading.Lock()
        self._watch = _Watch(database.origin)
        self._listener: Listener | None = None

    def watch(self, on_release: Callable[[], None]) -> None:
        """Call ``on_release`` (on the database's thread) when another replica's run released
        blobs, and once the listener is (re)connected (a release may have been missed)."""
        self._watch.on_release = on_release
        if self._listener is None:
            self._listener = Listener(self._db.settings, self._watch, CHANNEL)
            self._db.call(self._listener.start())

    def release(self, deferred: Mapping[str, float], now: float) -> None:
        """Tell every replica of blobs a run left (digest, since when); old rows go."""
        if not deferred:
            return
        digests = sorted(deferred)
        self._db.call(self._release(digests, [deferred[d] for d in digests], now))

    async def _release(self, digests: list[str], since: list[float], now: float) -> None:
        async with self._db.pool.acquire() as connection, connection.transaction():
            await connection.execute(_PRUNE, now - RELEASED_KEPT)
            await connection.execute(_RELEASE, digests, since)
            await connection.execute(_NOTIFY, CHANNEL, self._db.origin)

    def released(self, after: int) -> list[tuple[int, str, float]]:
        """The released rows after row ``after``: (row, digest, since)."""
        rows = self._db.run("fetch", _RELEASED, after)
        return [(int(row[0]), str(row[1]), float(row[2])) for row in rows]

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        body = self._execute("fetchval", _GET, key)
        return default if body is None else decode(key, json.loads(body))

    def set(self, key: str, value: Any) -> bool:
        """Store ``value`` under ``key``."""
        self._execute("execute", _SET, key, json.dumps(encode(key, value)))
        return True

    def transact(self) -> contextlib.AbstractContextManager[None]:
        """A transaction of this thread's calls, serialised across the tier; nested calls
        join the outer one."""
        return self._tx.transact()

    def _execute(self, method: str, query: str, *args: Any) -> Any:
        return self._tx.execute(method, query, *args)

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
        """Release a run lock still held, stop listening, and disconnect."""
        with contextlib.suppress(Exception):
            self.end_run()
        if self._listener is not None and not self._db.thread.closed:
            with contextlib.suppress(Exception):
                self._db.call(self._listener.close())
        self._db.close()


class _Watch:
    """Feeds the listener: another replica's release calls ``on_release``."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.on_release: Callable[[], None] = lambda: None

    def notified(self, payload: str) -> None:
        """Another replica's release (this process's own are skipped)."""
        if payload != self.origin:
            self.on_release()

    def listening(self, connected: bool) -> None:
        """A reconnected listener may have missed a release: look once."""
        if connected:
            self.on_release()
