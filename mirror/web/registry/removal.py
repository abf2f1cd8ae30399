"""``DELETE /v2/<name>/blobs/<digest>`` of a hosted repository (distribution-spec "Deleting
blobs"): the blob is unlinked; the garbage collector deletes it once nothing refers to it."""

from __future__ import annotations

from aiohttp import web

from mirror.oci.digest import Digest
from mirror.web.registry.manifests import hosted_target


async def delete_blob(request: web.Request) -> web.Response:
    """Unlink the blob from the repository; 202, ``BLOB_UNKNOWN`` when it does not hold it."""
    hosted, where = hosted_target(request)
    hosted.delete_blob(where, Digest.parse(request.match_info["digest"]))
    return web.Response(status=202)
