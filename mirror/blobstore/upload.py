"""The upload writer: a blob pushed in pieces is staged under a temporary name (it has no
digest yet) and installed under the digest the final ``PUT`` names, through the store's own
``create`` writer, so a committed upload is byte for byte the format of a cached blob (sealed
by an encrypted store). Every byte is hashed as it goes into the store; nothing is committed
unless the digest and size match."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from pathlib import Path

from mirror.blobstore.interface import BlobStore
from mirror.oci.digest import Digest
from mirror.verify import Verifier, verified


async def _file_chunks(
    path: Path, size: int, chunk_size: int, executor: Executor | None
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    fd = await loop.run_in_executor(executor, os.open, path, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            data = await loop.run_in_executor(
                executor, os.pread, fd, min(chunk_size, size - offset), offset
            )
            if not data:
                raise EOFError(f"{path} ended at {offset}, expected {size} bytes")
            offset += len(data)
            yield data
    finally:
        os.close(fd)


async def install_upload(
    store: BlobStore,
    digest: Digest,
    staged: Path,
    size: int,
    *,
    chunk_size: int,
    executor: Executor | None = None,
) -> bool:
    """Commit the ``size`` staged bytes at ``staged`` as ``digest``; ``False`` when the store
    already held it. Raises ``DigestMismatch`` (nothing committed) when they hash otherwise."""
    verifier = Verifier(digest, size)
    if await store.stat(digest) is not None:
        # Content-addressed: only the proof that the upload is this content is needed.
        async for _ in verified(_file_chunks(staged, size, chunk_size, executor), verifier):
            pass
        return False
    writer = store.create(digest)
    try:
        async for chunk in verified(_file_chunks(staged, size, chunk_size, executor), verifier):
            await writer.write(chunk)
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    return True
