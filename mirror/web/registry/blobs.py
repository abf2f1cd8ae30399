"""``GET``/``HEAD /v2/<name>/blobs/<digest>`` (distribution-spec "Pulling blobs")."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from aiohttp import web

from mirror.errors import CorruptObject
from mirror.oci.digest import Digest
from mirror.oci.ranges import parse_range
from mirror.pullthrough.blobs import BlobBody
from mirror.pullthrough.fill import FillFailed
from mirror.web.accesslog import body_bytes
from mirror.web.keys import SENT_DIRECT, SENT_STREAMED, services, target
from mirror.web.middleware import client_gone, note_disconnect
from mirror.web.registry.sealed_send import send_sealed_range
from mirror.web.registry.sendfile import send_file_range, socket_fd

log = logging.getLogger(__name__)


async def blob(request: web.Request) -> web.StreamResponse:
    """Answer a blob, whole or one range; a cold blob streams while the cache fills."""
    where = target(request)
    digest = Digest.parse(request.match_info["digest"])
    range_spec = parse_range(request.headers.get("Range"))
    svc = services(request)
    headers = {
        "Docker-Content-Digest": str(digest),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
    }
    if request.method == "HEAD":
        size = await svc.blobs.stat(where, digest)
        return web.Response(status=200, headers={**headers, "Content-Length": str(size)})
    body = await svc.blobs.open(where, digest, range_spec)
    response = web.StreamResponse(status=206 if body.range else 200, headers=headers)
    response.content_length = body.range.length if body.range else body.size
    if body.range:
        response.headers["Content-Range"] = body.range.content_range()
    sent = 0
    try:
        await response.prepare(request)
        if not await _send_directly(request, body):
            async for chunk in body.chunks:
                await response.write(chunk)
                sent += len(chunk)
                request[SENT_STREAMED] = sent
    except ConnectionError:
        if not client_gone(request):
            raise
        # The client cancelled or timed out: what it got is its business; the fill goes on.
        # The access line's count is settled now, while the transport can still say how much
        # of it never left (it may be gone when the line is written).
        transport = request.transport
        unsent = transport.get_write_buffer_size() if transport is not None else 0
        request[SENT_STREAMED] = max(0, sent - unsent)
        sent = body_bytes(request, response)
        note_disconnect(request, f"{sent} of {response.content_length} bytes of {digest} sent")
        return response
    except (FillFailed, CorruptObject) as exc:
        # Headers are out: the only honest answer is to cut the connection short.
        log.error("aborting response for %s: %s", digest, exc)
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionAbortedError(str(exc)) from exc
    finally:
        await body.chunks.aclose()
    await response.write_eof()
    return response


async def _send_directly(request: web.Request, body: BlobBody) -> bool:
    """Send a warm cached body on the connection's socket itself, past aiohttp's writer
    (counted in ``SENT_DIRECT``); ``False`` when it must be streamed instead (a fill, TLS)."""
    transport = request.transport
    sock = socket_fd(transport) if body.file or body.sealed else None
    if transport is None or sock is None:
        return False

    def counted(metric: Callable[[int], None]) -> Callable[[int], None]:
        def sent(count: int) -> None:
            request[SENT_DIRECT] = request.get(SENT_DIRECT, 0) + count
            metric(count)

        return sent

    if body.file is not None:
        # A plaintext cached file: the kernel copies it to the socket (zero-copy).
        span = body.file
        await send_file_range(transport, sock, span.fd, span.first, span.length, counted(span.sent))
    elif body.sealed is not None:
        # A sealed cached file: decrypted into reused buffers and written to the socket.
        await send_sealed_range(
            transport, sock, replace(body.sealed, sent=counted(body.sealed.sent))
        )
    return True
