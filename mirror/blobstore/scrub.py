"""Scrubbing: decrypt (when encrypted) and hash every cached object, evicting bad ones."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from mirror.blobstore.interface import BlobStore, RangeReader
from mirror.errors import CorruptObject, DigestMismatch, KeyUnavailable
from mirror.oci.digest import Digest
from mirror.verify import Verifier, verified

READ_SIZE = 1024 * 1024


@dataclass
class ScrubReport:
    """What a scrub found: objects checked, plaintext bytes read, and the bad ones."""

    total: int = 0
    checked: int = 0
    bytes: int = 0
    bad: list[tuple[Digest, str]] = field(default_factory=list)
    # Objects wrapped by a KEK that is not loaded: not evicted.
    locked: list[tuple[Digest, str]] = field(default_factory=list)


async def check_object(store: BlobStore, digest: Digest) -> tuple[int, str | None]:
    """Read and hash one object: bytes read and ``None``, or the reason it is bad (it has
    been evicted by then)."""
    opened = await store.open(digest)
    if opened is None:
        return 0, "failed its header, size or key check"
    reader, size = opened
    verifier = Verifier(digest, size)
    matches = True
    try:
        async for _data in verified(_contents(reader, size), verifier):
            pass
    except CorruptObject as exc:
        return verifier.count, exc.reason
    except DigestMismatch:
        matches = False
    finally:
        await reader.close()
    if not matches:
        await store.delete(digest)
        return verifier.count, "content does not match its digest"
    return verifier.count, None


async def _contents(reader: RangeReader, size: int) -> AsyncIterator[bytes]:
    """The object's bytes up to ``size``; ends early where the object does."""
    offset = 0
    while offset < size:
        data = await reader.read(offset, min(READ_SIZE, size - offset))
        if not data:
            return
        offset += len(data)
        yield data


async def scrub(
    store: BlobStore, on_progress: Callable[[ScrubReport], None] | None = None
) -> ScrubReport:
    """Check every object in ``store``; bad ones are evicted and listed in the report."""
    digests = list(store.digests())
    report = ScrubReport(total=len(digests))
    for digest in digests:
        try:
            count, problem = await check_object(store, digest)
        except KeyUnavailable as exc:
            report.locked.append((digest, ", ".join(exc.kek_ids)))
            count, problem = 0, None
        report.checked += 1
        report.bytes += count
        if problem is not None:
            report.bad.append((digest, problem))
        if on_progress is not None:
            on_progress(report)
    return report
