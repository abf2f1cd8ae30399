"""One whole blob fetched from upstream and verified, resumed with ``Range`` when it breaks."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from contextlib import aclosing

from mirror.errors import DigestMismatch, UpstreamUnavailable
from mirror.oci.digest import Digest
from mirror.pullthrough.source import BlobSource
from mirror.verify import Verifier, verified

log = logging.getLogger(__name__)


class Download:
    """The bytes of blob ``digest`` of ``repo`` from ``client``, hashed as they pass.

    A transfer that breaks mid-blob (``UpstreamUnavailable``) is resumed with ``Range`` from
    the last byte absorbed, up to ``resume_attempts`` times; the hash carries on over the
    resumed bytes. ``on_resume`` is told of each resume. The pieces yielded start at
    ``chunk_size`` bytes and double up to ``piece_size`` (see ``coalesced``).
    """

    def __init__(
        self,
        client: BlobSource,
        repo: str,
        digest: Digest,
        *,
        chunk_size: int,
        resume_attempts: int,
        piece_size: int | None = None,
        on_resume: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._repo = repo
        self._digest = digest
        self._chunk_size = chunk_size
        self._piece_size = piece_size or chunk_size
        self._resume_attempts = resume_attempts
        self._on_resume = on_resume

    async def chunks(
        self, started: Callable[[int], Awaitable[None]]
    ) -> AsyncGenerator[bytes, None]:
        """Yield the whole blob; ``started(size)`` is awaited once upstream announced its size,
        before the first byte.

        Raises ``DigestMismatch`` when the content is wrong, too long or short, or its size
        changed on resume; ``UpstreamUnavailable`` once the resumes are used up; the
        upstream's ``RegistryError`` when it refused.
        """
        verifier: Verifier | None = None
        attempt = 0
        while True:
            offset = verifier.count if verifier is not None else 0
            try:
                async with self._client.open_blob(self._repo, self._digest, offset) as blob:
                    size = blob.size
                    if size is None:
                        # A chunked answer (some blob CDNs): the registry's HEAD names the size,
                        # and the verifier holds the content to it.
                        size = verifier.size if verifier is not None else None
                        if size is None:
                            size = await self._client.head_blob(self._repo, self._digest)
                    if verifier is None:
                        await started(size)
                        verifier = Verifier(self._digest, size)
                    elif size != verifier.size:
                        raise DigestMismatch(
                            str(self._digest),
                            "(size changed on resume)",
                            expected_size=verifier.size,
                            actual_size=size,
                        )
                    # Hashed in a worker thread while the fill writes the chunk and the next
                    # one arrives.
                    pieces = coalesced(
                        blob.iter_chunks(self._piece_size), self._chunk_size, self._piece_size
                    )
                    stream = verified(pieces, verifier, in_thread=True)
                    async with aclosing(stream):
                        async for chunk in stream:
                            yield chunk
                return
            except UpstreamUnavailable as exc:
                attempt += 1
                if verifier is None or attempt > self._resume_attempts:
                    raise
                self._on_resume()
                log.warning(
                    "resuming fill of %s at byte %d (attempt %d): %s",
                    self._digest,
                    verifier.count,
                    attempt,
                    exc,
                )


async def coalesced(
    chunks: AsyncIterable[bytes], size: int, largest: int | None = None
) -> AsyncGenerator[bytes, None]:
    """``chunks`` regrouped into pieces of exactly ``size`` bytes (the last one shorter); with
    ``largest``, each piece twice the size of the one before, up to ``largest`` (a multiple of
    ``size`` by a power of two keeps every piece a whole number of ``size`` chunks).

    A socket hands over whatever arrived (often 64-256 KiB); every piece costs a hash job,
    a sealed-chunk write and a wake-up of each reader, so whole pieces cut that overhead by
    the ratio, and pieces of whole sealed chunks take the writer's no-copy path. Growing from
    ``size`` keeps the first byte as early as pieces of ``size`` would (a small blob, or a slow
    upstream, is not held back for a large piece). Each byte is copied once (the join of a
    piece; a chunk that straddles two pieces is cut by views). Bytes not yet in a whole piece
    are dropped if the stream breaks (a resume refetches them).
    """
    held: list[bytes | memoryview] = []
    length = 0
    async for chunk in chunks:
        if not held and len(chunk) == size:
            yield chunk
            size = min(2 * size, largest or size)
            continue
        view = memoryview(chunk)
        while length + len(view) >= size:
            need = size - length
            yield b"".join([*held, view[:need]])
            held, length, view = [], 0, view[need:]
            size = min(2 * size, largest or size)
        if view:
            held.append(view)
            length += len(view)
    if length:
        yield b"".join(held)
