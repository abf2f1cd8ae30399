"""Upload sessions on disk: ``<root>/<uuid>/data`` (the bytes received so far) and
``<root>/<uuid>/state.json`` (tenancy, repository, last activity).

The offset of a session is the size of its data file, so a session survives a restart as it
is: no hash state is kept between requests (the bytes are hashed once, as they are installed
into the blob store at the final ``PUT``), and nothing needs re-hashing on resume. A session
idle for longer than ``timeout`` seconds is unknown (``BLOB_UPLOAD_UNKNOWN``) and its files
are removed by :meth:`UploadStore.sweep`.
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

from mirror.blobstore.interface import BlobStore
from mirror.blobstore.upload import install_upload
from mirror.clock import Clock
from mirror.errors import DigestMismatch, ErrorCode, RegistryError
from mirror.oci.digest import Digest

log = logging.getLogger(__name__)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DATA = "data"
STATE = "state.json"


@dataclass(frozen=True, slots=True)
class Session:
    """One upload session: its id, the repository it belongs to, and its directory."""

    uuid: str
    tenancy: str
    repo: str
    path: Path

    @property
    def data(self) -> Path:
        """The file of the bytes received so far."""
        return self.path / DATA

    def offset(self) -> int:
        """How many bytes were received (the size of the data file)."""
        try:
            return self.data.stat().st_size
        except FileNotFoundError:
            return 0


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
        # One request at a time per session (a PATCH racing a PUT would corrupt the data).
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, upload: str) -> asyncio.Lock:
        """The lock serialising the requests of one session."""
        return self._locks.setdefault(upload, asyncio.Lock())

    def start(self, tenancy: str, repo: str) -> Session:
        """A new, empty session of ``tenancy``/``repo``."""
        upload = self._new_id()
        path = self.root / upload
        path.mkdir(mode=0o700)
        session = Session(upload, tenancy, repo, path)
        (path / DATA).touch(mode=0o600)
        self._write_state(session)
        return session

    def _write_state(self, session: Session) -> None:
        state = {"tenancy": session.tenancy, "repo": session.repo, "touched": self._clock.now()}
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

    async def append(
        self, session: Session, chunks: AsyncIterable[bytes], start: int | None = None
    ) -> int:
        """Write ``chunks`` at the end of the session's data and return the new offset.

        ``start`` (a ``Content-Range`` chunk) must be the current offset, else 416
        ``RANGE_INVALID`` with the current ``Range``: chunks arrive in order, without overlap.
        """
        offset = session.offset()
        if start is not None and start != offset:
            raise RegistryError(
                ErrorCode.RANGE_INVALID,
                f"chunk starts at {start}, the upload has {offset} bytes",
                headers=range_headers(session, offset),
            )
        loop = asyncio.get_running_loop()
        fd = os.open(session.data, os.O_WRONLY | os.O_APPEND)
        try:
            async for chunk in chunks:
                await loop.run_in_executor(self._executor, _write_all, fd, chunk)
                offset += len(chunk)
        finally:
            os.close(fd)
            self._write_state(session)
        return offset

    def truncate(self, session: Session, size: int) -> None:
        """Cut the session's data back to ``size`` bytes (undo a chunk that was refused)."""
        os.truncate(session.data, size)

    async def commit(self, session: Session, digest: Digest, store: BlobStore) -> int:
        """Install the session's bytes in ``store`` as ``digest`` and end the session; the
        size. A mismatch raises ``DIGEST_INVALID`` and discards the upload (nothing visible).
        """
        size = session.offset()
        try:
            await install_upload(
                store,
                digest,
                session.data,
                size,
                chunk_size=self.chunk_size,
                executor=self._executor,
            )
        except DigestMismatch as exc:
            self.discard(session)
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                f"the upload is {exc.actual}, not {digest}",
                detail={"digest": str(digest)},
            ) from None
        self.discard(session)
        return size

    def discard(self, session: Session) -> None:
        """Remove the session and its files."""
        shutil.rmtree(session.path, ignore_errors=True)
        self._locks.pop(session.uuid, None)

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
                shutil.rmtree(entry, ignore_errors=True)
                self._locks.pop(entry.name, None)
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


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        written = os.write(fd, view)
        view = view[written:]
