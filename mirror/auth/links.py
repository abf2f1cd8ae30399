"""The authorisation-aware cache: content is served through a repository only when that
repository is known to reference it.

A repository's links grow as its manifests are served (the manifest and everything it
references). Content asked for through a repository without a link must first be proven by the
repository's own upstream, with its own credentials: knowing a digest is not access, and an
upstream that answers 200 to every ``HEAD`` proves nothing. The proofs:

- a manifest: its bytes, fetched by digest from the upstream, hash to the digest;
- a cached blob: a window of ``window`` bytes at a random offset, fetched from the upstream
  with ``Range``, equals the cached bytes (an upstream that only knows the digest cannot
  answer); a blob not cached yet is served only by a verified fill from this repository's own
  upstream (the blob service keys fills by upstream), and is proven on its next request.
"""

from __future__ import annotations

import random
from typing import Protocol

from mirror.blobstore.interface import BlobStore
from mirror.db.roles import Links, Manifests, Tags
from mirror.errors import CorruptObject, ErrorCode, RegistryError
from mirror.oci.digest import Digest, is_digest
from mirror.oci.media import MANIFEST_TYPES
from mirror.upstream.pool import UpstreamPool
from mirror.upstream.routing import Target

# Bytes of a cached blob compared with the upstream's: one small read on both sides, yet 2**32768
# possible answers for an upstream guessing them (the whole blob when it is smaller).
WINDOW = 4096


class LinkRecords(Links, Manifests, Tags, Protocol):
    """The metadata links are proven from: the links, cached manifests and tags."""


class LinkGuard:
    """Proves that a target repository references a digest before it is served.

    ``rng`` chooses the offsets of blob proofs (a ``random.SystemRandom`` in production, so an
    upstream cannot predict them).
    """

    def __init__(
        self,
        metadata: LinkRecords,
        upstreams: UpstreamPool,
        store: BlobStore,
        rng: random.Random,
        *,
        window: int = WINDOW,
    ) -> None:
        self._metadata = metadata
        self._upstreams = upstreams
        self._store = store
        self._rng = rng
        self._window = window

    async def prove_blob(self, target: Target, digest: Digest) -> None:
        """Return when ``target`` references blob ``digest`` or the blob is not cached (then
        only ``target``'s own upstream can fill it), else raise ``BLOB_UNKNOWN``."""
        if self._metadata.linked(target.upstream, target.repo, digest):
            return
        try:
            cached = await self._cached_window(digest)
        except CorruptObject:
            return  # the store evicted it: a fill from this upstream has to bring it back
        if cached is None:
            return
        first, expected = cached
        if expected:
            answer = await self._upstream_window(target, digest, first, len(expected))
            if answer != expected:
                raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
        self._metadata.link(target.upstream, target.repo, [digest])

    async def _cached_window(self, digest: Digest) -> tuple[int, bytes] | None:
        """A random window of the cached blob and its offset; ``None`` when not cached."""
        opened = await self._store.open(digest)
        if opened is None:
            return None
        reader, size = opened
        try:
            length = min(self._window, size)
            first = self._rng.randrange(size - length + 1)
            return first, await reader.read(first, length) if length else b""
        finally:
            await reader.close()

    async def _upstream_window(
        self, target: Target, digest: Digest, first: int, length: int
    ) -> bytes:
        """Bytes ``first..first+length-1`` of the blob as the upstream sends them (fewer when
        it sends fewer); a refusal is ``BLOB_UNKNOWN``, an outage passes through."""
        client = self._upstreams.get(target.upstream)
        got = bytearray()
        try:
            async with client.open_blob(target.repo, digest, first, length=length) as blob:
                # Read no further than the window (an upstream that ignored Range sends the
                # whole blob); leaving early closes the connection instead of pooling it.
                async for chunk in blob.iter_chunks(length):
                    got += chunk
                    if len(got) >= length:
                        break
        except RegistryError as exc:
            raise self._unknown(exc, ErrorCode.BLOB_UNKNOWN, digest) from None
        return bytes(got[:length])

    async def prove_manifest(self, target: Target, digest: Digest) -> None:
        """Return when ``target`` references manifest ``digest`` or its upstream sent the bytes
        of ``digest``, verified (then it is linked); else raise ``MANIFEST_UNKNOWN``."""
        if self._metadata.linked(target.upstream, target.repo, digest):
            return
        client = self._upstreams.get(target.upstream)
        try:
            fetched = await client.get_manifest(target.repo, str(digest), MANIFEST_TYPES)
        except RegistryError as exc:
            raise self._unknown(exc, ErrorCode.MANIFEST_UNKNOWN, digest) from None
        if Digest.of(fetched.body, digest.algorithm) != digest:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"digest": str(digest)})
        self._metadata.link(target.upstream, target.repo, [digest])

    async def record_manifest(self, target: Target, reference: str, digest: Digest) -> None:
        """``target`` is about to send manifest ``digest`` (asked for as ``reference``): link
        it and everything it references, once it is proven for ``target``.

        Proven: linked already, or the tag ``reference`` of ``target`` names it (tag records
        are written only from a verified fetch from this repository's upstream), or else its
        upstream sends its bytes now (a manifest served from the cache, like an index's child
        chosen by ``Accept``). Raises ``MANIFEST_UNKNOWN`` when it cannot be proven.
        """
        if not self._metadata.linked(target.upstream, target.repo, digest):
            tag = None if is_digest(reference) else reference
            record = self._metadata.tag(target.upstream, target.repo, tag) if tag else None
            if record is None or record.digest != str(digest):
                await self.prove_manifest(target, digest)
        record_of = self._metadata.manifest(digest)
        references = record_of.referenced() if record_of is not None else ()
        self._metadata.link(target.upstream, target.repo, [digest, *references])

    @staticmethod
    def _unknown(exc: RegistryError, code: ErrorCode, digest: Digest) -> RegistryError:
        # The upstream refusing (401/403), not knowing (404) the digest in this repository or
        # not having the range asked for (416) all mean: not here. Outages and throttling pass
        # through as they are.
        if exc.status in (401, 403, 404, 416):
            return RegistryError(code, detail={"digest": str(digest)})
        return exc
