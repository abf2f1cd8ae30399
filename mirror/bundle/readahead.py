"""Blobs read ahead of the bundle's writer: the tar takes one member at a time, in order, but
while one blob is written the next ones are already being opened and read (a cold blob
filled by the mirror, a stored one read and decrypted), as skopeo copies layers in parallel.

Each blob read ahead holds at most ``buffered`` chunks, and at most ``depth`` blobs are read
at once, so memory stays bounded by ``depth * (buffered + 1)`` chunks whatever the image's
size; a blob of one piece (most layers of a many-layer image) is read whole before its turn.
An error of a blob's read is raised when the writer reaches that blob; leaving early cancels
every read still running.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Generic, TypeVar

Job = TypeVar("Job")


@dataclass(frozen=True, slots=True)
class Opened:
    """A blob's bytes as its source gives them, and whether each piece was authenticated."""

    chunks: AsyncGenerator[bytes, None]
    authenticated: bool = False


# Opens one job's blob (the source it comes from is the opener's choice).
Opener = Callable[[Job], Awaitable[Opened]]


class _End:
    """The end of a blob's pieces."""


class _Failed:
    """A blob's read failed with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


Item = bytes | bool | _End | _Failed


class _Reading(Generic[Job]):
    """One blob being read into a bounded queue: first whether it is authenticated, then its
    pieces, then the end (or the error)."""

    def __init__(self, job: Job, opener: Opener[Job], buffered: int) -> None:
        self.job = job
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=buffered)
        self.task = asyncio.create_task(self._read(opener))

    async def _read(self, opener: Opener[Job]) -> None:
        try:
            opened = await opener(self.job)
            await self.queue.put(opened.authenticated)
            async with aclosing(opened.chunks) as chunks:
                async for chunk in chunks:
                    await self.queue.put(chunk)
            await self.queue.put(_End())
        except Exception as exc:
            await self.queue.put(_Failed(exc))

    async def authenticated(self) -> bool:
        """Whether the pieces are authenticated (raises the opener's error)."""
        item = await self.queue.get()
        if isinstance(item, _Failed):
            raise item.error
        return bool(item)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The blob's pieces (raises the read's error where it happened)."""
        while True:
            item = await self.queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, bytes):
                yield item


@dataclass(frozen=True, slots=True)
class Ready(Generic[Job]):
    """A job's turn to be written: its pieces, read ahead."""

    job: Job
    chunks: AsyncGenerator[bytes, None]
    authenticated: bool


def _always(job: object) -> bool:
    return True


async def read_ahead(
    jobs: Sequence[Job],
    opener: Opener[Job],
    *,
    depth: int = 4,
    buffered: int = 1,
    ahead: Callable[[Job], bool] = _always,
) -> AsyncGenerator[Ready[Job], None]:
    """Each job in order, its blob read by ``opener`` up to ``depth`` jobs ahead of the one
    the caller is writing (``depth`` 1: one at a time); a job ``ahead`` refuses is read only
    at its own turn. Use under ``aclosing``."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    window: list[tuple[Job, _Reading[Job] | None]] = []
    upcoming = iter(jobs)
    try:
        while True:
            for job in itertools.islice(upcoming, depth - len(window)):
                early = _Reading(job, opener, buffered) if ahead(job) else None
                window.append((job, early))
            if not window:
                return
            job, reading = window[0]
            if reading is None:
                reading = _Reading(job, opener, buffered)
                window[0] = (job, reading)
            yield await _turn(reading)
            window.pop(0)
    finally:
        # The one being written (if the caller left early) and every read ahead.
        started = [reading for _, reading in window if reading is not None]
        for reading in started:
            reading.task.cancel()
        await asyncio.gather(*(r.task for r in started), return_exceptions=True)


async def _turn(reading: _Reading[Job]) -> Ready[Job]:
    authenticated = await reading.authenticated()
    return Ready(reading.job, reading.chunks(), authenticated)
