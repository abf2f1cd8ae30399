"""``GET``/``HEAD /_tier/blobs/<digest>``: a blob for another replica of the tier.

Only a request signed with the tier secret is served (the load balancer refuses the path to
clients as well), only for a digest this replica owns (a replica with another view of the ring
gets 503 and goes upstream itself, so two replicas never forward to each other in a loop), and
only from an upstream this replica has a client for. The answer comes from the cache or the
one fill of the digest that the whole tier shares.
"""

from __future__ import annotations

from aiohttp import web

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.oci.names import validate_name
from mirror.tier.peer import PEER_PATH
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
    if not replica.placement.owns(digest):
        raise RegistryError(
            ErrorCode.UNAVAILABLE,
            "this replica does not own the digest",
            detail={"digest": str(digest), "owner": replica.placement.owner(digest)},
        )
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


def add_tier_routes(app: web.Application) -> None:
    """Register the internal peer route."""
    app.router.add_get(PEER_PATH, peer_blob)
