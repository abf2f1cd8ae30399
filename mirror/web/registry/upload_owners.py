"""Upload sessions across a tier: each session's staged bytes stay on the replica that started
it (nginx routes a repository's uploads to one replica), and its place is recorded in the
shared database. When a later request of the session reaches another replica (the ring
changed, or nginx passed over the holder for a while), that replica forwards it, signed, to
the holder's ``/_tier/uploads/`` route after checking the client's right to push here; the
holder answers as if the client had reached it. A holder that cannot be reached leaves the
session lost: 404 ``BLOB_UPLOAD_UNKNOWN``, and the client starts the upload again (OCI
distribution spec, "Pushing blobs in chunks").
"""

from __future__ import annotations

import logging

from aiohttp import web
from yarl import URL

from mirror.auth.access import RepoRef
from mirror.db.postgres.uploads import PostgresUploadSessions
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.uploads import Session
from mirror.tier.peer import PeerUnavailable
from mirror.tier.signing import HEADER
from mirror.web.keys import UPLOADS
from mirror.web.tier import TIER

log = logging.getLogger(__name__)

# The tier's table of upload sessions (only on a tier with the postgres backend and replicas
# on their own disks).
UPLOAD_OWNERS = web.AppKey("upload_owners", PostgresUploadSessions)

FORWARD_PATH = "/_tier/uploads/{name}/{uuid}"
# Request headers a forwarded request keeps (the rest are the hop's or the peer signature's).
_KEPT_REQUEST = ("Content-Type", "Content-Range", "Content-Length")
# Answer headers the client gets back from the holder.
_KEPT_ANSWER = (
    "Content-Type",
    "Location",
    "Range",
    "Docker-Upload-UUID",
    "Docker-Content-Digest",
    "OCI-Chunk-Min-Length",
)


def claim(request: web.Request, session: Session) -> None:
    """Record that this replica holds the new ``session`` (nothing off a tier)."""
    owners = request.app.get(UPLOAD_OWNERS)
    if owners is not None:
        me = request.app[TIER].placement.self_server
        owners.claim(session.uuid, me, session.tenancy, session.repo)


def ended(request: web.Request, uuid: str) -> None:
    """The session committed or was cancelled: no replica holds it any more."""
    owners = request.app.get(UPLOAD_OWNERS)
    if owners is not None:
        owners.forget(uuid)


async def elsewhere(request: web.Request, ref: RepoRef) -> web.Response | None:
    """The holder's answer when another replica holds this request's session; ``None`` when
    this replica is to answer (it holds the session, or nobody does: then 404)."""
    owners = request.app.get(UPLOAD_OWNERS)
    if owners is None or HEADER in request.headers:
        return None
    uuid = request.match_info["uuid"]
    try:
        request.app[UPLOADS].get(uuid, ref.tenancy, ref.name)
        return None
    except RegistryError:
        pass
    owner = owners.owner(uuid)
    placement = request.app[TIER].placement
    if owner is None or owner.replica == placement.self_server:
        return None
    if (owner.tenancy, owner.repo) != (ref.tenancy, ref.name):
        return None
    try:
        base = placement.url(owner.replica)
    except KeyError:
        return None  # a replica no longer in the tier: its sessions are gone
    return await _forward(request, owner.replica, base, ref, uuid)


async def _forward(
    request: web.Request, server: str, base: URL, ref: RepoRef, uuid: str
) -> web.Response:
    name = request.match_info["name"]
    query = {**request.query, "tenancy": ref.tenancy, "repo": ref.name}
    url = base.with_path(FORWARD_PATH.format(name=name, uuid=uuid)).with_query(query)
    headers = {k: request.headers[k] for k in _KEPT_REQUEST if k in request.headers}
    body = request.content.iter_any() if request.body_exists else None
    peers = request.app[TIER].peers
    try:
        resp = await peers.send(server, request.method, url, body, headers)
    except PeerUnavailable as exc:
        log.warning("upload %s: its replica %s cannot be reached: %s", uuid, server, exc)
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": uuid}) from None
    try:
        answer = await resp.read()
        kept = {k: resp.headers[k] for k in _KEPT_ANSWER if k in resp.headers}
        return web.Response(status=resp.status, body=answer, headers=kept)
    finally:
        resp.release()
