"""``/_tier/hosted/<digest>`` and ``/_tier/repair``: hosted copies between the replicas.

``HEAD``/``GET`` answer from this replica's own disk only (404 ``BLOB_UNKNOWN`` when it does
not hold the blob: the asking replica tries the next one on the walk; never an upstream).
``PUT ?size=N`` takes a copy: streamed into the store, hashed as it arrives, and kept only
when digest and size match (400 ``DIGEST_INVALID`` otherwise, nothing kept); a copy already
held is answered 200 (idempotent). ``POST /_tier/repair`` runs one repair pass here and
answers its report. ``GET /_tier/inventory`` streams the hosted digests this replica holds,
sorted, one per line; ``GET /_tier/proof/<digest>?nonce=<64 hex>`` answers ``sha256(nonce ||
content)`` of this replica's copy (404 ``BLOB_UNKNOWN`` when it holds none). Every request
must be signed with the tier secret.
"""

from __future__ import annotations

from aiohttp import web

from mirror.blobstore.interface import iter_range
from mirror.errors import DigestMismatch, ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.oci.ranges import parse_range, resolve_range
from mirror.tier.hosted import CHUNK, HostedCopies, HostedDigests
from mirror.tier.inventory import (
    INVENTORY_PATH,
    NONCE_BYTES,
    PROOF_PATH,
    content_proof,
    inventory_lines,
)
from mirror.tier.peer import HOSTED_PATH
from mirror.tier.repair_call import REPAIR_PATH
from mirror.tier.signing import HEADER
from mirror.verify import Verifier
from mirror.web.keys import CACHE
from mirror.web.tier import TIER

HOSTED_COPIES = web.AppKey("hosted_copies", HostedCopies)
# The digests of every hosted link in the (shared) metadata: what a repair pass walks.
HOSTED_DIGESTS = web.AppKey("hosted_digests", HostedDigests)


def _signed(request: web.Request) -> str:
    sender = request.app[TIER].signer.verify(
        request.method, request.raw_path, request.headers.get(HEADER)
    )
    if sender is None:
        raise RegistryError(ErrorCode.UNAUTHORIZED, "peer request not signed by the tier")
    return sender


async def held_blob(request: web.Request) -> web.StreamResponse:
    """A hosted blob from this replica's disk, whole or from a range."""
    _signed(request)
    digest = Digest.parse(request.match_info["digest"])
    opened = await request.app[CACHE].open(digest)
    if opened is None:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
    reader, size = opened
    try:
        spec = parse_range(request.headers.get("Range"))
        byte_range = resolve_range(spec, size) if spec else None
        first, last = (byte_range.first, byte_range.last) if byte_range else (0, size - 1)
        response = web.StreamResponse(status=206 if byte_range else 200)
        response.content_length = last + 1 - first
        if byte_range:
            response.headers["Content-Range"] = byte_range.content_range()
        await response.prepare(request)
        if request.method != "HEAD":
            async for chunk in iter_range(reader, first, last, CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        await reader.close()


def _size_param(request: web.Request) -> int:
    text = request.query.get("size", "")
    if not text.isdigit() or len(text) > 18:
        raise RegistryError(ErrorCode.SIZE_INVALID, "a copy names its size: ?size=N")
    return int(text)


async def take_copy(request: web.Request) -> web.Response:
    """Keep a copy of a hosted blob another replica committed (verified before it is kept)."""
    _signed(request)
    digest = Digest.parse(request.match_info["digest"])
    size = _size_param(request)
    store = request.app[CACHE]
    if await store.stat(digest) is not None:
        return web.Response(status=200)  # held already (the sender asks first: rarely sent)
    verifier = Verifier(digest, size)
    writer = store.create(digest)
    try:
        async for chunk in request.content.iter_any():
            verifier.update(chunk)
            await writer.write(chunk)
        verifier.verify()
    except DigestMismatch as exc:
        await writer.abort()
        raise RegistryError(
            ErrorCode.DIGEST_INVALID,
            "the copy does not match its digest and size",
            detail={"digest": str(digest), "actual": exc.actual},
        ) from None
    except BaseException:
        await writer.abort()
        raise
    await writer.commit()
    return web.Response(status=201)


async def repair(request: web.Request) -> web.Response:
    """One repair pass on this replica: it copies here what it should hold and does not."""
    _signed(request)
    report = await request.app[HOSTED_COPIES].repair(request.app[HOSTED_DIGESTS]())
    replica = request.app[TIER].placement.self_server
    return web.json_response({"replica": replica, **report.as_dict()})


async def inventory(request: web.Request) -> web.StreamResponse:
    """The hosted digests this replica holds on its own disk, sorted, one per line."""
    _signed(request)
    store = request.app[CACHE]
    hosted = dict.fromkeys(request.app[HOSTED_DIGESTS]())
    held = [digest for digest in hosted if await store.stat(digest) is not None]
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=ascii"})
    await response.prepare(request)
    for line in inventory_lines(held):
        await response.write(line)
    await response.write_eof()
    return response


async def proof(request: web.Request) -> web.Response:
    """``sha256(nonce || content)`` of this replica's copy of a blob."""
    _signed(request)
    digest = Digest.parse(request.match_info["digest"])
    text = request.query.get("nonce", "")
    if len(text) != 2 * NONCE_BYTES or not all(c in "0123456789abcdef" for c in text):
        raise RegistryError(
            ErrorCode.REQUEST_INVALID, f"a proof needs ?nonce= of {NONCE_BYTES} bytes, hex"
        )
    answer = await content_proof(request.app[CACHE], digest, bytes.fromhex(text))
    if answer is None:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
    return web.Response(text=answer)


def add_hosted_routes(app: web.Application) -> None:
    """Register the hosted-copy routes (HEAD comes with GET)."""
    app.router.add_get(HOSTED_PATH, held_blob)
    app.router.add_put(HOSTED_PATH, take_copy)
    app.router.add_post(REPAIR_PATH, repair)
    app.router.add_get(INVENTORY_PATH, inventory)
    app.router.add_get(PROOF_PATH, proof)
