"""How the mirror reaches PostgreSQL: the settings, a pool of connections and the listener
that keeps the read memo exact."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from mirror.db.postgres.memo import CHANNEL

log = logging.getLogger(__name__)

# Seconds between tries to reconnect a lost listener.
RELISTEN_DELAY = 1.0


class Notified(Protocol):
    """What a listener feeds: a memo named ``origin`` told of notifications and of whether
    it is listening."""

    @property
    def origin(self) -> str:
        """This process's application_name (its own notifications are skipped)."""

    def notified(self, payload: str) -> None:
        """One notification's payload."""

    def listening(self, connected: bool) -> None:
        """Whether the listener is connected."""


@dataclass(frozen=True)
class PostgresSettings:
    """Where the shared metadata database is: a DSN without a password, and the password
    (from the environment or a file; never printed)."""

    dsn: str
    password: str | None = field(default=None, repr=False)
    # Connections in the pool (calls in flight at once from this process).
    pool_size: int = 4
    # Seconds a call may take before it fails as MetadataUnavailable.
    call_timeout: float = 10.0

    def connect_args(self, origin: str) -> dict[str, Any]:
        """Keyword arguments of ``asyncpg.connect`` / ``create_pool``; ``origin`` names this
        process to the server (and in its notifications)."""
        return {
            "dsn": self.dsn,
            "password": self.password,
            "server_settings": {"application_name": origin},
        }


async def open_pool(settings: PostgresSettings, origin: str) -> asyncpg.Pool:
    """A started pool of connections to the database."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        min_size=1, max_size=settings.pool_size, **settings.connect_args(origin)
    )
    return pool


class Listener:
    """A connection of its own listening on ``channel`` (``CHANNEL`` unless told), feeding
    ``memo``; reconnected when lost (the memo keeps nothing meanwhile)."""

    def __init__(self, settings: PostgresSettings, memo: Notified, channel: str = CHANNEL) -> None:
        self._settings = settings
        self._memo = memo
        self._channel = channel
        self._connection: asyncpg.Connection | None = None
        self._retry: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Connect and listen (raises when the server cannot be reached)."""
        connection = await asyncpg.connect(**self._settings.connect_args(self._memo.origin))
        await connection.add_listener(self._channel, self._notified)
        connection.add_termination_listener(self._lost)
        self._connection = connection
        self._memo.listening(True)

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._memo.notified(payload)

    def _lost(self, _connection: Any) -> None:
        self._memo.listening(False)
        self._connection = None
        if not self._closed:
            log.warning("lost the metadata listener; reconnecting (the read memo is off)")
            self._retry = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(RELISTEN_DELAY)
            try:
                await self.start()
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("metadata listener still down: %s", type(exc).__name__)

    async def close(self) -> None:
        """Stop listening and close the connection."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        connection, self._connection = self._connection, None
        self._memo.listening(False)
        if connection is not None:
            await connection.close()
