"""Upload sessions on disk: ``<root>/<uuid>/state.json`` (tenancy, repository, last activity,
bytes received) and the staged object (``mirror.blobstore.staging``): the blob in the store's
own format (sealed when encryption is on), hashed as it is written.

The final ``PUT`` compares that running hash with its digest and renames the object into the
store: nothing is read back or copied, and nothing is visible before digest and size match. A
session survives a restart: its staged object is re-hashed once when it is next used. A
session idle for longer than ``timeout`` seconds is unknown (``BLOB_UPLOAD_UNKNOWN``) and its
files are removed by :meth:`UploadStore.sweep`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import uuid as uuidlib
from collections.abc import AsyncIterable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from mirror.blobstore.pipeline import write_body
from mirror.blobstore.staging import Staged, Stager
from mirror.clock import Clock
from mirror.errors import CorruptObject, DigestMismatch, ErrorCode, RegistryError
from mirror.oci.digest import Digest

log = logging.getLogger(__name__)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STATE = "state.json"


@dataclass(frozen=True, slots=True)
class Session:
    """One upload session: its id, the repository it belongs to, and its directory."""

    uuid: str
    tenancy: str
    repo: str
    path: Path

    def offset(self) -> int:
        """How many bytes were received (as of the last request)."""
        try:
            offset = json.loads((self.path / STATE).read_text()).get("offset", 0)
        except (OSError, ValueError, AttributeError):
            return 0
        return offset if isinstance(offset, int) else 0


def unknown(upload: str) -> RegistryError:
    """The spec's answer for a session that does not exist (or expired, or is another
    repository's)."""
    return RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": upload})


class UploadStore:
    """The upload sessions under ``root``; ``timeout`` seconds of idleness end a session."""

    def __init__(
        self,
        root: Path,
        clock: Clock,
        *,
        timeout: float,
        chunk_size: int,
        stager: Stager,
        executor: Executor | None = None,
        new_id: Callable[[], str] = lambda: str(uuidlib.uuid4()),
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.timeout = timeout
        self.chunk_size = chunk_size
        self._clock = clock
        self._executor = executor
        self._new_id = new_id
        self._stager = stager
        # One request at a time per session (a PATCH racing a PUT would corrupt the data).
        self._locks: dict[str, asyncio.Lock] = {}
        # The staged objects of sessions used since start-up (open, with their running hash).
        self._staged: dict[str, Staged] = {}

    def lock(self, upload: str) -> asyncio.Lock:
        """The lock serialising the requests of one session."""
        return self._locks.setdefault(upload, asyncio.Lock())

    def start(self, tenancy: str, repo: str) -> Session:
        """A new, empty session of ``tenancy``/``repo``."""
        upload = self._new_id()
        path = self.root / upload
        path.mkdir(mode=0o700)
        session = Session(upload, tenancy, repo, path)
        self._write_state(session, 0)
        return session

    def _write_state(self, session: Session, offset: int) -> None:
        state = {
            "tenancy": session.tenancy,
            "repo": session.repo,
            "touched": self._clock.now(),
            "offset": offset,
        }
        temp = session.path / (STATE + ".tmp")
        temp.write_text(json.dumps(state))
        os.replace(temp, session.path / STATE)

    def _read_state(self, path: Path) -> dict[str, object] | None:
        try:
            state = json.loads((path / STATE).read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _expired(self, state: dict[str, object]) -> bool:
        touched = state.get("touched")
        if not isinstance(touched, int | float):
            return True
        return self._clock.now() - touched > self.timeout

    def get(self, upload: str, tenancy: str, repo: str) -> Session:
        """The live session ``upload`` of ``tenancy``/``repo``; ``BLOB_UPLOAD_UNKNOWN`` if it
        does not exist, expired, or belongs to another repository."""
        if not _UUID.fullmatch(upload):
            raise unknown(upload)
        path = self.root / upload
        state = self._read_state(path)
        if state is None or state.get("tenancy") != tenancy or state.get("repo") != repo:
            raise unknown(upload)
        if self._expired(state):
            self.discard(Session(upload, tenancy, repo, path))
            raise unknown(upload)
        return Session(upload, tenancy, repo, path)

    async def staged(self, session: Session) -> Staged:
        """The session's staged object (opened, and re-hashed, on first use since start-up);
        ``BLOB_UPLOAD_UNKNOWN`` (the session discarded) when it can no longer be read."""
        staged = self._staged.get(session.uuid)
        if staged is None:
            try:
                staged = await self._stager.stage(session.path)
            except (CorruptObject, OSError) as exc:
                log.warning("upload %s cannot be resumed: %s", session.uuid, exc)
                self.discard(session)
                raise unknown(session.uuid) from None
            self._staged[session.uuid] = staged
        return staged

    async def append(
        self, session: Session, chunks: AsyncIterable[bytes], start: int | None = None
    ) -> int:
        """Write ``chunks`` at the end of the session's staged object and return the new
        offset.

        ``start`` (a ``Content-Range`` chunk) must be the current offset, else 416
        ``RANGE_INVALID`` with the current ``Range``: chunks arrive in order, without overlap.
        """
        staged = await self.staged(session)
        if start is not None and start != staged.size:
            raise RegistryError(
                ErrorCode.RANGE_INVALID,
                f"chunk starts at {start}, the upload has {staged.size} bytes",
                headers=range_headers(session, staged.size),
            )
        staged.mark()
        try:
            await write_body(staged, chunks, self.chunk_size)
        finally:
            await staged.flush()
            self._write_state(session, staged.size)
        return staged.size

    def truncate(self, session: Session, size: int) -> None:
        """Undo the chunk just appended (it was refused), back to ``size`` bytes; when that
        cannot be done (an encrypted chunk was sealed) the session is discarded."""
        staged = self._staged.get(session.uuid)
        if staged is None or staged.size < size:
            return
        if not staged.rollback() or staged.size != size:
            self.discard(session)
            return
        self._write_state(session, size)

    async def commit(self, session: Session, digest: Digest) -> int:
        """Install the session's staged object as ``digest`` (a rename) and end the session;
        the size. A mismatch raises ``DIGEST_INVALID`` and discards the upload (nothing
        visible)."""
        staged = await self.staged(session)
        size = staged.size
        try:
            await staged.install(digest)
        except DigestMismatch as exc:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                f"the upload is {exc.actual}, not {digest}",
                detail={"digest": str(digest)},
            ) from None
        finally:
            self.discard(session)
        return size

    def discard(self, session: Session) -> None:
        """Remove the session and its files."""
        self._forget(session.uuid)
        shutil.rmtree(session.path, ignore_errors=True)

    def _forget(self, upload: str) -> None:
        staged = self._staged.pop(upload, None)
        if staged is not None:
            staged.close()
        self._locks.pop(upload, None)

    def sweep(self) -> int:
        """Remove the files of expired (or unreadable) sessions; returns how many."""
        removed = 0
        for entry in list(self.root.iterdir()):
            if not entry.is_dir() or entry.is_symlink():
                entry.unlink(missing_ok=True)
                removed += 1
                continue
            lock = self._locks.get(entry.name)
            if lock is not None and lock.locked():
                continue  # a request is writing it right now
            state = self._read_state(entry)
            if state is None or self._expired(state):
                self._forget(entry.name)
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        if removed:
            log.info("swept %d expired upload sessions from %s", removed, self.root)
        return removed

    async def sweep_periodically(self, interval: float) -> None:
        """Sweep every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.sweep()


def range_headers(session: Session, offset: int) -> dict[str, str]:
    """``Location``, ``Docker-Upload-UUID`` and ``Range`` of a session at ``offset``."""
    name = f"{session.tenancy}/{session.repo}"
    return {
        "Location": f"/v2/{name}/blobs/uploads/{session.uuid}",
        "Docker-Upload-UUID": session.uuid,
        "Range": f"0-{max(offset - 1, 0)}",
    }
