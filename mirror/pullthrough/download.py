"""One whole blob fetched from upstream and verified, resumed with ``Range`` when it breaks."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
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
    ``chunk_size`` bytes and double up to ``piece_size`` (see ``UpstreamBlob.pieces``).
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
                    pieces = blob.pieces(self._chunk_size, self._piece_size)
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
