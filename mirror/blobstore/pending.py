"""The durability journal: cached objects already renamed into place whose bytes may not be on
disk yet.

A cache fill publishes its verified object by rename as soon as the digest matched, so the pull
completes without waiting for the fsync of a whole blob (seconds per GiB on a slow disk). The
fsync then runs on the journal's own thread. Before the rename, an entry naming the object is
made durable here; it is removed once the object's bytes and its directory are fsynced. After a
crash, every object still listed is re-verified at start-up (``recover``): kept if it still
hashes to its digest, deleted otherwise. So a crash never leaves a torn object that is served.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

from mirror.errors import RegistryError
from mirror.oci.digest import Digest

log = logging.getLogger(__name__)

# An entry's name: ``<algorithm>-<encoded>.<random>`` (one per publication, so a second fill of
# a digest deleted meanwhile never clears the first one's entry, or the reverse).
_SEPARATOR = "-"


def fsync_path(path: Path) -> None:
    """fsync a directory (or file) by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PendingSync:
    """The journal of published-but-not-yet-durable objects in ``directory``, and the single
    thread that makes them durable (disk-bound work, one object at a time; ``executor``
    replaces that thread, and should run one job at a time too)."""

    def __init__(self, directory: Path, executor: Executor | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = executor

    def record(self, digest: Digest) -> Path:
        """Durably list ``digest`` as published but not yet durable; returns its entry. Call
        before the rename that makes the object visible (blocking: a small fsync)."""
        name = f"{digest.algorithm}{_SEPARATOR}{digest.encoded}.{secrets.token_hex(8)}"
        entry = self.directory / name
        os.close(os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        fsync_path(self.directory)
        return entry

    def settle(self, fd: int, final_path: Path, entry: Path) -> Future[None]:
        """In the background: fsync and close ``fd`` (the published object), fsync its
        directory, then drop ``entry``. A failed fsync withdraws the object; any error leaves
        the entry for the next start-up."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="mirror-fsync")
        job = self._thread.submit(_make_durable, fd, final_path, entry)
        job.add_done_callback(_log_failure)
        return job

    def drain(self) -> None:
        """Wait until every object published so far is durable (its entry dropped)."""
        if self._thread is not None:
            self._thread.submit(lambda: None).result()

    def entries(self) -> list[tuple[Digest, Path]]:
        """Every listed object and its entry (names that are not entries are ignored)."""
        found = []
        for entry in sorted(self.directory.iterdir()):
            algorithm, _, rest = entry.name.partition(_SEPARATOR)
            try:
                found.append((Digest.parse(f"{algorithm}:{rest.partition('.')[0]}"), entry))
            except RegistryError:
                log.warning("ignoring %s in the durability journal", entry)
        return found

    def recover(
        self, path: Callable[[Digest], Path], intact: Callable[[Path, Digest], bool]
    ) -> int:
        """At start-up: re-verify every listed object (``intact``), keep and fsync those that
        verify, delete the rest; returns how many were deleted. Every entry is dropped."""
        discarded = 0
        for digest, entry in self.entries():
            final = path(digest)
            try:
                if final.exists() and not intact(final, digest):
                    final.unlink(missing_ok=True)
                    discarded += 1
                    log.warning("discarded %s: not intact after a crash before its fsync", digest)
                elif final.exists():
                    fsync_path(final)
                    fsync_path(final.parent)
            except OSError as exc:
                log.warning("discarded %s: unreadable after a crash (%s)", digest, exc)
                final.unlink(missing_ok=True)
                discarded += 1
            entry.unlink(missing_ok=True)
        return discarded


class EarlyEntry:
    """One publication's journal entry, recorded in ``executor`` from the moment its writer
    knows it will publish, while the object's bytes still arrive: the publication then costs a
    rename, and the entry is still durable before that rename, as the journal needs."""

    def __init__(self, pending: PendingSync, digest: Digest, executor: Executor | None) -> None:
        loop = asyncio.get_running_loop()
        self._job: asyncio.Future[Path] = loop.run_in_executor(executor, pending.record, digest)

    async def entry(self) -> Path:
        """The durable entry (waiting for its fsync if it still runs); ``OSError`` when the
        journal refused it."""
        return await asyncio.shield(self._job)

    def drop(self) -> None:
        """The object will not be published: remove the entry, once it exists."""
        self._job.add_done_callback(_drop_entry)


def _drop_entry(job: asyncio.Future[Path]) -> None:
    if not job.cancelled() and job.exception() is None:
        job.result().unlink(missing_ok=True)


def _make_durable(fd: int, final_path: Path, entry: Path) -> None:
    """fsync the object and its directory, then drop its entry. If the disk fails the fsync
    (EIO, ENOSPC), the object is withdrawn: its bytes may never reach the disk intact."""
    try:
        try:
            os.fsync(fd)
        except OSError:
            _withdraw(fd, final_path)
            raise
    finally:
        os.close(fd)
    fsync_path(final_path.parent)
    entry.unlink(missing_ok=True)


def _withdraw(fd: int, final_path: Path) -> None:
    """Delete ``final_path`` if it is still the file open on ``fd`` (not a later copy)."""
    try:
        if os.stat(final_path).st_ino == os.fstat(fd).st_ino:
            final_path.unlink()
    except FileNotFoundError:
        pass


def _log_failure(job: Future[None]) -> None:
    error = job.exception()
    if isinstance(error, FileNotFoundError):
        log.debug("published object deleted before its fsync: %r", error)
    elif error is not None:
        log.error("making a published object durable failed: %r", error)
