"""The blob store hosted repositories see on a tier replica: this replica's disk, with copies.

A manifest body stored by a push is replicated to its holders before the push is answered,
and a body or blob this replica does not hold is found on the replicas of its walk (a
manifest body is copied here when read, it is small). Everything else is the local store's.
"""

from __future__ import annotations

from collections.abc import Iterator

from mirror.blobstore.interface import BlobStore, BlobWriter, RangeReader
from mirror.oci.digest import Digest
from mirror.tier.hosted import HostedCopies


class ReplicatedStore:
    """``local`` as a :class:`BlobStore`, its hosted objects kept on ``copies.factor``
    replicas."""

    def __init__(self, local: BlobStore, copies: HostedCopies) -> None:
        self._local = local
        self._copies = copies

    async def stat(self, digest: Digest) -> int | None:
        """The size held here or by a replica on the digest's walk."""
        size = await self._local.stat(digest)
        return size if size is not None else await self._copies.size_anywhere(digest)

    async def open(self, digest: Digest) -> tuple[RangeReader, int] | None:
        """A reader of the local copy."""
        return await self._local.open(digest)

    async def get(self, digest: Digest) -> bytes | None:
        """The whole (small) object, copied here first from a replica if need be."""
        body = await self._local.get(digest)
        if body is None and await self._copies.fetch(digest):
            body = await self._local.get(digest)
        return body

    async def put(self, digest: Digest, data: bytes) -> None:
        """Store a verified small object here and on its holders (``NotReplicated`` when too
        few replicas took it)."""
        await self._local.put(digest, data)
        await self._copies.replicate(digest)

    def create(self, digest: Digest) -> BlobWriter:
        """Start writing a new local object."""
        return self._local.create(digest)

    async def delete(self, digest: Digest) -> bool:
        """Remove the local copy."""
        return await self._local.delete(digest)

    def digests(self) -> Iterator[Digest]:
        """The digests stored locally."""
        return self._local.digests()

    def footprint(self, size: int) -> int:
        """The local store's footprint of an object of ``size`` bytes."""
        return self._local.footprint(size)
