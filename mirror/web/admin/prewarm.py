"""The admin API's pre-warm endpoint (issue 12): fetch images into the cache now.

    POST /admin/v1/prewarm   {"images": ["docker.io/library/alpine:3.20", ...], "concurrency": 4}

Answers when every image is done: per image the digest, manifests, blobs and bytes (and how
many were fetched from upstream now), or why it failed; the totals and the seconds taken.
System administrators only when auth is enabled, like the rest of the admin API.
"""

from __future__ import annotations

import time

from aiohttp import web

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.reflist import ReferenceListError, parse_all
from mirror.pullthrough.prewarm import ImageResult
from mirror.web.admin.identity import as_system_admin, body
from mirror.web.keys import AUTH, PREWARM

PATH = "/admin/v1/prewarm"
MAX_IMAGES = 1000
MAX_CONCURRENCY = 64


def report(results: list[ImageResult], seconds: float) -> dict[str, object]:
    """The JSON report of a pre-warm: totals, then one entry per image."""
    return {
        "images": len(results),
        "failed": sum(1 for r in results if not r.ok),
        "bytes": sum(r.bytes for r in results),
        "bytes_fetched": sum(r.bytes_fetched for r in results),
        "seconds": round(seconds, 3),
        "results": [r.as_json() for r in results],
    }


def _request(doc: dict[str, object]) -> tuple[list[str], int]:
    """The images and concurrency of a request body; ``REQUEST_INVALID`` naming the field."""
    images = doc.get("images")
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        raise RegistryError(ErrorCode.REQUEST_INVALID, "images: expected a list of references")
    if len(images) > MAX_IMAGES:
        raise RegistryError(ErrorCode.REQUEST_INVALID, f"images: at most {MAX_IMAGES} at once")
    concurrency = doc.get("concurrency", 4)
    if (
        not isinstance(concurrency, int)
        or isinstance(concurrency, bool)
        or not 1 <= concurrency <= MAX_CONCURRENCY
    ):
        raise RegistryError(
            ErrorCode.REQUEST_INVALID, f"concurrency: expected 1..{MAX_CONCURRENCY}"
        )
    return images, concurrency


async def prewarm(request: web.Request) -> web.Response:
    """``POST /admin/v1/prewarm``: pre-warm the images; the report (200 even if some failed)."""
    if AUTH in request.app:
        as_system_admin(request)
    images, concurrency = _request(await body(request))
    try:
        refs = parse_all(("images", image) for image in images)
    except ReferenceListError as exc:
        raise RegistryError(ErrorCode.REQUEST_INVALID, str(exc)) from None
    started = time.perf_counter()
    results = await request.app[PREWARM].warm_all(refs, concurrency)
    return web.json_response(report(results, time.perf_counter() - started))


def add_prewarm_routes(app: web.Application) -> None:
    """Register the pre-warm endpoint."""
    app.router.add_post(PATH, prewarm)
