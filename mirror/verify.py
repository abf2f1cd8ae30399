"""Verification that wraps a stream: hash and size-check bytes as they pass, fail at the end.

``verified`` is the wrapper every path that hashes content goes through; ``hold_last`` keeps
the piece that would complete a response until the content behind it verified, so a client
never receives a whole response of unverified bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable

from mirror.errors import DigestMismatch
from mirror.oci.digest import Digest


class Verifier:
    """Hashes content as it streams and checks it against ``digest`` (and ``size`` if known).

    ``update`` fails early once more bytes than ``size`` arrived; ``verify`` fails when the
    stream ended short or hashed to something else.
    """

    def __init__(self, digest: Digest, size: int | None = None) -> None:
        self.digest = digest
        self.size = size
        self.count = 0
        self._hash = digest.hasher()

    def update(self, chunk: bytes | memoryview) -> None:
        """Absorb ``chunk``; raises ``DigestMismatch`` as soon as the size is exceeded."""
        self.count += len(chunk)
        if self.size is not None and self.count > self.size:
            raise DigestMismatch(
                str(self.digest), "(too long)", expected_size=self.size, actual_size=self.count
            )
        self._hash.update(chunk)

    def verify(self) -> None:
        """Raise ``DigestMismatch`` unless exactly the expected content was seen."""
        actual = f"{self.digest.algorithm}:{self._hash.hexdigest()}"
        if actual != str(self.digest) or (self.size is not None and self.count != self.size):
            raise DigestMismatch(
                str(self.digest), actual, expected_size=self.size, actual_size=self.count
            )


async def verified(
    chunks: AsyncIterable[bytes], verifier: Verifier, *, in_thread: bool = False
) -> AsyncGenerator[bytes, None]:
    """Yield ``chunks`` unchanged while ``verifier`` absorbs them; at the end of the stream
    raise ``DigestMismatch`` unless it verified (early, once the stream is too long).

    With ``in_thread`` each chunk is hashed in a worker thread while the consumer handles it
    and the next one arrives; the hash has caught up before the next chunk is yielded, and
    before this stream ends whichever way, so ``verifier.count`` is what was yielded.
    """
    hashing: asyncio.Future[None] | None = None
    try:
        async for chunk in chunks:
            if hashing is not None:
                job, hashing = hashing, None
                await job
            if in_thread:
                hashing = asyncio.get_running_loop().run_in_executor(None, verifier.update, chunk)
            else:
                verifier.update(chunk)
            yield chunk
        if hashing is not None:
            job, hashing = hashing, None
            await job
        verifier.verify()
    finally:
        if hashing is not None:
            await asyncio.gather(hashing, return_exceptions=True)


async def hold_last(
    pieces: AsyncIterable[bytes],
    length: int,
    verdict: Callable[[], Awaitable[None]] | None = None,
) -> AsyncGenerator[bytes, None]:
    """Yield ``pieces`` (``length`` bytes in all) as they come, except the one completing
    ``length`` bytes: it is released only once ``pieces`` ended without raising and
    ``verdict()`` (if given) returned. Whatever either raises (``DigestMismatch``, ...) is
    raised instead, so the last piece of a response never leaves unverified. A stream that
    ends short holds nothing back: its source must raise (``verified`` does).
    """
    sent = 0
    held: bytes | None = None
    async for piece in pieces:
        if held is not None:
            if piece:
                raise ValueError(f"stream went past its {length} bytes")
            continue
        sent += len(piece)
        if sent >= length:
            held = piece
        elif piece:
            yield piece
    if held is not None:
        if verdict is not None:
            await verdict()
        yield held
