"""``GET``/``HEAD /_tier/blobs/<digest>``: a blob for another replica of the tier.

Only a request signed with the tier secret is served (the load balancer refuses the path to
clients as well); only for a digest this replica serves in its view of the tier: the owner,
or the first replica on the digest's walk that neither this one nor the asking one found down
(otherwise it answers 421 and the asking replica moves on, so two replicas never forward to
each other in a loop); and only from an upstream this replica has a client for. The answer
comes from the cache or the one fill of the digest that the whole tier shares.
"""

from __future__ import annotations

from aiohttp import web

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.oci.names import validate_name
from mirror.tier.peer import MISDIRECTED, PEER_PATH
from mirror.tier.replica import Replica
from mirror.tier.signing import HEADER
from mirror.upstream.routing import Target
from mirror.web.keys import TARGET, UPSTREAMS
from mirror.web.registry.blobs import blob

TIER = web.AppKey("tier", Replica)


async def peer_blob(request: web.Request) -> web.StreamResponse:
    """Serve a blob this replica owns to a peer replica."""
    replica = request.app[TIER]
    sender = replica.signer.verify(request.method, request.raw_path, request.headers.get(HEADER))
    if sender is None:
        raise RegistryError(ErrorCode.UNAUTHORIZED, "peer request not signed by the tier")
    digest = Digest.parse(request.match_info["digest"])
    skip = [s for s in request.query.get("skip", "").split(",") if s]
    chosen = replica.placement.chosen(digest, skip)
    if chosen != replica.placement.self_server:
        return misdirected(digest, chosen)
    key, repo = request.query.get("upstream", ""), request.query.get("repo", "")
    validate_name(repo)
    try:
        request.app[UPSTREAMS].get(key)
    except KeyError:
        raise RegistryError(
            ErrorCode.UNAVAILABLE, "no such upstream on this replica", detail={"upstream": key}
        ) from None
    request[TARGET] = Target(key, repo, repo)
    return await blob(request)


def misdirected(digest: Digest, chosen: str) -> web.Response:
    """421: in this replica's view another replica serves ``digest``."""
    error = {
        "code": ErrorCode.UNAVAILABLE.name,
        "message": "another replica serves this digest",
        "detail": {"digest": str(digest), "replica": chosen},
    }
    return web.json_response({"errors": [error]}, status=MISDIRECTED)


def add_tier_routes(app: web.Application) -> None:
    """Register the internal peer route."""
    app.router.add_get(PEER_PATH, peer_blob)
