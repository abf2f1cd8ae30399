"""Reading a bundle: an image layout directory, or an uncompressed tar of one (what
``mirror export`` and ``skopeo copy ... oci-archive:`` write), read in place without
extracting: a tar's members are located once, then each blob is read at its offset."""

from __future__ import annotations

import asyncio
import json
import tarfile
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

from mirror.oci.digest import Digest
from mirror.oci.layout import INDEX_FILE, ImageLayout, LayoutError

CHUNK = 1024 * 1024


class BundleSource:
    """A bundle's ``index.json`` entries and its blobs by digest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members: dict[str, tuple[int, int]] = {}
        if path.is_dir():
            self._layout: ImageLayout | None = ImageLayout.open(path)
        else:
            self._layout = None
            self._locate()

    def _locate(self) -> None:
        try:
            with tarfile.open(self.path, mode="r:") as archive:
                for info in archive:
                    if info.isfile():
                        name = info.name.removeprefix("./")
                        self._members[name] = (info.offset_data, info.size)
        except (OSError, tarfile.TarError) as exc:
            raise LayoutError(self.path, f"not a readable tar: {exc}") from None
        if "oci-layout" not in self._members or INDEX_FILE not in self._members:
            raise LayoutError(self.path, "not an OCI image layout (no oci-layout or index.json)")

    def entries(self) -> list[dict[str, Any]]:
        """The descriptors of ``index.json``; ``LayoutError`` when it does not parse."""
        if self._layout is not None:
            return self._layout.entries()
        offset, size = self._members[INDEX_FILE]
        with self.path.open("rb") as handle:
            handle.seek(offset)
            body = handle.read(size)
        try:
            doc = json.loads(body)
            found = doc["manifests"]
        except (ValueError, KeyError, TypeError):
            raise LayoutError(self.path, "index.json is not an image index") from None
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []

    def size(self, digest: Digest) -> int | None:
        """The blob's size in the bundle, or ``None`` if the bundle lacks it."""
        if self._layout is not None:
            path = self._layout.blob_path(digest)
            return path.stat().st_size if path.is_file() else None
        member = self._members.get(f"blobs/{digest.algorithm}/{digest.encoded}")
        return member[1] if member else None

    def chunks(self, digest: Digest, limit: int | None = None) -> Generator[bytes, None, None]:
        """The blob's bytes in chunks, at most ``limit`` of them (unverified: the caller
        hashes them)."""
        if self._layout is not None:
            path, offset = self._layout.blob_path(digest), 0
            size = path.stat().st_size
        else:
            offset, size = self._members[f"blobs/{digest.algorithm}/{digest.encoded}"]
            path = self.path
        left = size if limit is None else min(size, limit)
        with path.open("rb") as handle:
            handle.seek(offset)
            while left > 0:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def read(self, digest: Digest, limit: int) -> bytes:
        """A small blob (a manifest) whole, cut at ``limit + 1`` bytes."""
        return b"".join(self.chunks(digest, limit + 1))

    async def stream(self, digest: Digest) -> AsyncIterator[bytes]:
        """The blob's chunks read in a worker thread, the next one while the consumer handles
        this one (one chunk ahead: memory stays flat)."""
        loop = asyncio.get_running_loop()
        chunks = self.chunks(digest)
        pending = loop.run_in_executor(None, next, chunks, None)
        try:
            while (chunk := await pending) is not None:
                pending = loop.run_in_executor(None, next, chunks, None)
                yield chunk
        finally:
            await asyncio.gather(pending, return_exceptions=True)
            chunks.close()
