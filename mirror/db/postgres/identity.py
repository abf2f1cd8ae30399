"""The identity records in PostgreSQL: the few calls the identity store makes of its
database (get, set, delete, iterate, transact), over table ``identity_records``.

Records are JSON (``mirror.db.identity.codec``). A transaction holds one connection and a
transaction-level advisory lock, so the store's check-then-write steps (a name taken, the
active-token limit) are serialised across the tier. Every change is announced on channel
``mirror_identity``; the store forgets its memoised lookups when another replica's arrives,
and memoises nothing while the listener is down.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg

from mirror.db.identity.codec import CodecError, decode, encode
from mirror.db.postgres.connect import Listener
from mirror.db.postgres.shared import LockedTransactions, SharedDatabase

CHANNEL = "mirror_identity"
# The advisory lock key of identity transactions ("ident").
IDENTITY_LOCK = 0x6964656E74

_GET = "SELECT body FROM identity_records WHERE kind = $1 AND k1 = $2 AND k2 = $3"
_SET = (
    "INSERT INTO identity_records VALUES ($1, $2, $3, $4::jsonb)"
    " ON CONFLICT (kind, k1, k2) DO UPDATE SET body = EXCLUDED.body"
)
_DELETE = "DELETE FROM identity_records WHERE kind = $1 AND k1 = $2 AND k2 = $3"
_KEYS = "SELECT kind, k1, k2 FROM identity_records ORDER BY kind, k1, k2"


def _row_key(key: tuple[str, ...]) -> tuple[str, str, str]:
    """The (kind, k1, k2) columns of a store key of one to three names."""
    if not isinstance(key, tuple) or not 1 <= len(key) <= 3:
        raise KeyError(key)
    padded = (*key, "", "")
    return padded[0], padded[1], padded[2]


def _store_key(row: asyncpg.Record) -> tuple[str, ...]:
    return tuple(part for part in (row[0], row[1], row[2]) if part)


class _Watch:
    """Feeds the listener: another process's change calls ``on_change``."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.connected = False
        self.on_change: Callable[[], None] = lambda: None

    def notified(self, payload: str) -> None:
        """Another writer's change (this process's own are skipped)."""
        if payload != self.origin:
            self.on_change()

    def listening(self, connected: bool) -> None:
        """A lost listener forgets everything (a change may be missed meanwhile)."""
        self.connected = connected
        self.on_change()


class PostgresRecords:
    """The identity database of a tier (shared by every replica)."""

    def __init__(self, database: SharedDatabase) -> None:
        self._db = database
        self._watch = _Watch(database.origin)
        self._listener = Listener(database.settings, self._watch, CHANNEL)
        self._tx = LockedTransactions(database, IDENTITY_LOCK)

    @classmethod
    def open(cls, database: SharedDatabase) -> PostgresRecords:
        """Start listening for other replicas' changes."""
        records = cls(database)
        database.call(records._listener.start())
        return records

    def watch(self, on_change: Callable[[], None]) -> Callable[[], bool]:
        """Call ``on_change`` when another replica changes a record; returns whether lookups
        may be memoised now (the listener is connected)."""
        self._watch.on_change = on_change
        return lambda: self._watch.connected

    # The database calls of the identity store ----------------------------------------

    def get(self, key: tuple[str, ...], default: Any = None) -> Any:
        """The record under ``key``, or ``default``."""
        row = self._execute("fetchval", _GET, *_row_key(key))
        if row is None:
            return default
        try:
            return decode(json.loads(row))
        except (CodecError, ValueError):
            return default

    def set(self, key: tuple[str, ...], value: object) -> bool:
        """Store ``value`` under ``key``."""
        self._execute("execute", _SET, *_row_key(key), json.dumps(encode(value)))
        return True

    def delete(self, key: tuple[str, ...]) -> bool:
        """Forget ``key`` (nothing happens when it is absent)."""
        self._execute("execute", _DELETE, *_row_key(key))
        return True

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        """Every key, in one query."""
        return iter([_store_key(row) for row in self._execute("fetch", _KEYS)])

    def transact(self) -> contextlib.AbstractContextManager[None]:
        """A transaction of this thread's calls, serialised across the tier; nested calls
        join the outer one."""
        return self._tx.transact()

    def _execute(self, method: str, query: str, *args: Any) -> Any:
        return self._tx.execute(method, query, *args)

    def close(self) -> None:
        """Stop listening and disconnect."""
        if not self._db.thread.closed:
            with contextlib.suppress(Exception):
                self._db.call(self._listener.close())
        self._db.close()
