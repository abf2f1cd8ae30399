"""What a replica holds, told to the others: inventories and content proofs of hosted copies.

A repair pass compares inventories instead of asking about each digest: ``GET
/_tier/inventory`` streams the hosted digests this replica holds on its own disk, sorted, one
per line (one request per peer, whatever the number of digests). A claim in an inventory is
not proof of content, so before a replica removes its extra copy of a blob it asks each
holder for a *content proof*: ``GET /_tier/proof/<digest>?nonce=<hex>`` answers
``sha256(nonce || content)`` computed over the holder's own copy, which the asking replica
computes over its own copy; a fresh random nonce per question means only a replica that
reads the whole content can answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Iterable

from mirror.blobstore.interface import BlobStore, iter_range
from mirror.oci.digest import Digest

INVENTORY_PATH = "/_tier/inventory"
PROOF_PATH = "/_tier/proof/{digest}"
NONCE_BYTES = 32
CHUNK = 256 * 1024


def inventory_lines(held: Iterable[Digest]) -> Iterable[bytes]:
    """The inventory body of ``held``: sorted digests, one per line."""
    return (f"{digest}\n".encode() for digest in sorted(str(d) for d in held))


async def parse_inventory(lines: AsyncIterable[bytes]) -> set[str]:
    """The digests of an inventory body (a malformed line raises ``ValueError``)."""
    held: set[str] = set()
    async for raw in lines:
        line = raw.decode("ascii").strip()
        if line:
            held.add(str(Digest.parse(line)))
    return held


async def content_proof(store: BlobStore, digest: Digest, nonce: bytes) -> str | None:
    """``sha256(nonce || content)`` of ``store``'s copy of ``digest``; ``None`` if not held."""
    opened = await store.open(digest)
    if opened is None:
        return None
    reader, size = opened
    proof = hashlib.sha256(nonce)
    try:
        if size:
            async for chunk in iter_range(reader, 0, size - 1, CHUNK):
                proof.update(chunk)
    finally:
        await reader.close()
    return proof.hexdigest()
