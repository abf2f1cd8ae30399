"""Where an export writes: an image layout directory or an uncompressed tar of one, both
resumable, both streaming (a blob goes from the network to the disk in chunks, hashed as it
passes, and is kept only once it verified).

A directory resumes by keeping every blob file already present that still hashes to its
name. A tar is written as ``<file>.part`` (``oci-layout``, then blobs, then ``index.json``
last) and renamed once complete; resuming scans the ``.part`` (or a finished tar being added
to) member by member, keeps every whole blob member that verifies, cuts the file at the
first member that does not (or at the old ``index.json``, whose entries it keeps) and
appends from there.
"""

from __future__ import annotations

import asyncio
import json
import os
import tarfile
import tempfile
from collections.abc import AsyncIterable, Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from mirror.bundle.writeback import WriteBehind
from mirror.errors import DigestMismatch
from mirror.oci.digest import Digest
from mirror.oci.layout import (
    INDEX_FILE,
    INDEX_MEDIA_TYPE,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    REF_NAME,
    ImageLayout,
)
from mirror.verify import Verifier

BLOCK = 512
READ_CHUNK = 1024 * 1024
LAYOUT_MARKER = json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()


class BundleSink(Protocol):
    """A layout being written."""

    def has(self, digest: Digest) -> bool:
        """Whether a verified copy of the blob is already in the bundle."""
        ...

    async def write(
        self,
        digest: Digest,
        size: int,
        chunks: AsyncIterable[bytes],
        *,
        authenticated: bool = False,
    ) -> None:
        """Add a blob from ``chunks``; raises ``DigestMismatch`` (nothing kept) if they do not
        hash to ``digest`` or are not ``size`` bytes. ``authenticated`` chunks (read from the
        encrypted store, each checked by its tag) are size-checked, not hashed again."""
        ...

    def finish(self, manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write ``index.json`` with ``manifests`` (after the entries of an earlier export
        whose names they do not reuse) and close; returns the index's entries."""
        ...


def merge_entries(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` entries whose name (or, unnamed, digest) no ``new`` entry has, then ``new``."""

    def key(entry: dict[str, Any]) -> str:
        return str(entry.get("annotations", {}).get(REF_NAME) or entry.get("digest"))

    taken = {key(e) for e in new}
    return [e for e in old if key(e) not in taken] + new


class Counted(Verifier):
    """A ``Verifier`` of authenticated content: checks the size, trusts the digest."""

    def update(self, chunk: bytes | memoryview) -> None:
        """Count ``chunk``; raises ``DigestMismatch`` as soon as the size is exceeded."""
        self.count += len(chunk)
        if self.size is not None and self.count > self.size:
            raise DigestMismatch(
                str(self.digest), "(too long)", expected_size=self.size, actual_size=self.count
            )

    def verify(self) -> None:
        """Raise ``DigestMismatch`` unless exactly ``size`` bytes were seen."""
        if self.size is not None and self.count != self.size:
            raise DigestMismatch(
                str(self.digest), "(short)", expected_size=self.size, actual_size=self.count
            )


def checker(digest: Digest, size: int, authenticated: bool) -> Verifier:
    """What checks a blob as it is written: its hash, or only its size when authenticated."""
    return Counted(digest, size) if authenticated else Verifier(digest, size)


def _hash_and_write(
    verifier: Verifier, out: BinaryIO, chunk: bytes, written: Callable[[], None] | None
) -> None:
    verifier.update(chunk)
    out.write(chunk)
    if written is not None:
        written()


async def absorb(
    chunks: AsyncIterable[bytes],
    verifier: Verifier,
    out: BinaryIO,
    written: Callable[[], None] | None = None,
) -> None:
    """Hash and write every chunk in a worker thread (hashlib and file writes release the GIL)
    while the event loop receives the next one: one chunk in flight, so memory stays flat.
    ``written`` is called in that thread after each write. Whatever the worker raised
    (``DigestMismatch`` once too long, ``OSError``) is raised."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    try:
        async for chunk in chunks:
            if pending is not None:
                job, pending = pending, None
                await job
            pending = loop.run_in_executor(None, _hash_and_write, verifier, out, chunk, written)
        if pending is not None:
            job, pending = pending, None
            await job
    finally:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)


def _hashes_to(path: Path, digest: Digest) -> bool:
    verifier = Verifier(digest)
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            verifier.update(chunk)
    try:
        verifier.verify()
    except DigestMismatch:
        return False
    return True


class DirectorySink:
    """An image layout directory (made where missing)."""

    def __init__(self, root: Path) -> None:
        self.layout = ImageLayout.create(root)
        self._verified: set[Digest] = set()

    def has(self, digest: Digest) -> bool:
        """Whether the blob file is there and hashes to its name (checked once per run)."""
        if digest in self._verified:
            return True
        path = self.layout.blob_path(digest)
        if path.is_file() and _hashes_to(path, digest):
            self._verified.add(digest)
            return True
        return False

    async def write(
        self,
        digest: Digest,
        size: int,
        chunks: AsyncIterable[bytes],
        *,
        authenticated: bool = False,
    ) -> None:
        """Stream into a temporary file beside the blob; renamed into place once verified."""
        path = self.layout.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        verifier = checker(digest, size, authenticated)
        try:
            with os.fdopen(fd, "wb") as out:
                await absorb(chunks, verifier, out)
                verifier.verify()
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
        self._verified.add(digest)

    def finish(self, manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write ``index.json`` atomically."""
        entries = merge_entries(self.layout.entries(), manifests)
        self.layout.write_index(entries)
        return entries


def _member(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


class TarSink:
    """An uncompressed tar of an image layout, written as ``<path>.part`` and renamed at the
    end; ``open`` resumes what an interrupted run (or an earlier export to ``path``) left."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".part")
        self._present: set[Digest] = set()
        self._old_entries: list[dict[str, Any]] = []
        self._out: BinaryIO | None = None
        self._behind: WriteBehind | None = None

    def open(self) -> TarSink:
        """Start, or resume, the ``.part`` file."""
        if not self.partial.exists() and self.path.exists():
            os.replace(self.path, self.partial)
        if self.partial.exists():
            end = self._scan()
            self._out = self.partial.open("r+b")
            self._out.truncate(end)
            self._out.seek(end)
        else:
            self._out = self.partial.open("wb")
        if self._out.tell() == 0:
            self._append(LAYOUT_FILE, [LAYOUT_MARKER], len(LAYOUT_MARKER))
        self._behind = WriteBehind(self._out)
        return self

    def _scan(self) -> int:
        """Where the usable prefix of the ``.part`` ends; notes its verified blobs."""
        end = 0
        with self.partial.open("rb") as tar:
            for name, offset, size in _members(tar):
                if name == INDEX_FILE:
                    tar.seek(offset)
                    self._old_entries = _entries(tar.read(size))
                    break
                if name.startswith("blobs/"):
                    digest = _digest_of_path(name)
                    tar.seek(offset)
                    if digest is None or not _stream_hashes_to(tar, size, digest):
                        break
                    self._present.add(digest)
                elif name != LAYOUT_FILE:
                    break
                end = offset + size + (-size % BLOCK)
        return end

    def has(self, digest: Digest) -> bool:
        """Whether a verified member of the blob is in the tar."""
        return digest in self._present

    async def write(
        self,
        digest: Digest,
        size: int,
        chunks: AsyncIterable[bytes],
        *,
        authenticated: bool = False,
    ) -> None:
        """Append the blob's member; on a mismatch the tar is cut back to before it."""
        out = self._opened()
        start = out.tell()
        verifier = checker(digest, size, authenticated)
        try:
            out.write(_member(f"blobs/{digest.algorithm}/{digest.encoded}", size))
            await absorb(chunks, verifier, out, self._behind)
            verifier.verify()
            out.write(_padding(size))
        except BaseException:
            out.seek(start)
            out.truncate(start)
            raise
        self._present.add(digest)

    def _append(self, name: str, pieces: list[bytes], size: int) -> None:
        out = self._opened()
        out.write(_member(name, size))
        for piece in pieces:
            out.write(piece)
        out.write(_padding(size))

    def _opened(self) -> BinaryIO:
        if self._out is None:
            raise RuntimeError("TarSink.open() first")
        return self._out

    def finish(self, manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append ``index.json`` and the end-of-archive blocks, sync, rename into place."""
        entries = merge_entries(self._old_entries, manifests)
        body = _index_bytes(entries)
        self._append(INDEX_FILE, [body], len(body))
        out = self._opened()
        out.write(b"\0" * (2 * BLOCK))
        out.flush()
        os.fsync(out.fileno())
        out.close()
        self._out = None
        os.replace(self.partial, self.path)
        return entries

    def close(self) -> None:
        """Leave the ``.part`` as it is (for a later resume)."""
        if self._out is not None:
            self._out.close()
            self._out = None


def _index_bytes(entries: list[dict[str, Any]]) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries}
    return json.dumps(doc, indent=2).encode() + b"\n"


def _entries(body: bytes) -> list[dict[str, Any]]:
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    found = doc.get("manifests") if isinstance(doc, dict) else None
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _members(tar: BinaryIO) -> Iterator[tuple[str, int, int]]:
    """``(name, data offset, size)`` of each whole member of an (uncompressed) tar, stopping
    at the end-of-archive block, a truncated member or a header that does not parse."""
    total = os.fstat(tar.fileno()).st_size
    tar.seek(0)
    try:
        with tarfile.open(fileobj=tar, mode="r:") as archive:
            for info in archive:
                if info.offset_data + info.size > total:
                    return
                yield info.name.removeprefix("./"), info.offset_data, info.size
    except tarfile.TarError:
        return


def _digest_of_path(name: str) -> Digest | None:
    parts = name.split("/")
    if len(parts) != 3:
        return None
    try:
        return Digest.parse(f"{parts[1]}:{parts[2]}")
    except Exception:
        return None


def _stream_hashes_to(handle: BinaryIO, size: int, digest: Digest) -> bool:
    verifier = Verifier(digest, size)
    left = size
    while left:
        chunk = handle.read(min(READ_CHUNK, left))
        if not chunk:
            return False
        verifier.update(chunk)
        left -= len(chunk)
    try:
        verifier.verify()
    except DigestMismatch:
        return False
    return True
