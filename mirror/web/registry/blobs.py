"""``GET``/``HEAD /v2/<name>/blobs/<digest>`` (distribution-spec "Pulling blobs")."""

from __future__ import annotations

import logging

from aiohttp import web

from mirror.errors import CorruptObject
from mirror.oci.digest import Digest
from mirror.oci.ranges import parse_range
from mirror.pullthrough.fill import FillFailed
from mirror.web.keys import services, target
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
        direct = body.file is not None or body.sealed is not None
        sock = socket_fd(request.transport) if direct else None
        if body.file is not None and sock is not None and request.transport is not None:
            # A plaintext cached file: the kernel copies it to the socket (zero-copy).
            sent = await send_file_range(
                request.transport,
                sock,
                body.file.fd,
                body.file.first,
                body.file.length,
                body.file.sent,
            )
        elif body.sealed is not None and sock is not None and request.transport is not None:
            # A sealed cached file: decrypted into reused buffers and written to the socket.
            sent = await send_sealed_range(request.transport, sock, body.sealed)
        else:
            async for chunk in body.chunks:
                await response.write(chunk)
                sent += len(chunk)
    except ConnectionError:
        if not client_gone(request):
            raise
        # The client cancelled or timed out: what it got is its business; the fill goes on.
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
