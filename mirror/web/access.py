"""The auth middleware: every registry request is authenticated, authorised by policy, and
served only content its repository is proven to reference.

distribution "Token Authentication Specification": a request without acceptable credentials
gets 401 ``UNAUTHORIZED`` with a ``Bearer`` challenge naming the realm, service and scope; a
logged-in user without permission gets 403 ``DENIED``. A bearer token whose access lacks the
scope gets a challenge with ``error="insufficient_scope"`` so the client asks for a new one.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from mirror.auth.access import RepoRef
from mirror.auth.policy.grammar import Verb
from mirror.auth.principal import Principal
from mirror.auth.scope import ALL, CATALOG, PULL, PUSH, REGISTRY, REPOSITORY
from mirror.auth.service import AuthService
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.repositories import hosted_target
from mirror.oci.digest import Digest, is_digest
from mirror.oci.names import HOST_PATTERN
from mirror.web.keys import AUTH, HOSTED, HOSTED_REPO, PRINCIPAL, TARGET

TOKEN_PATH = "/auth/token"
_BASE = ("/v2/", "/v2")
_CATALOG = "/v2/_catalog"
_BRACKETED = re.compile(r"\[([0-9a-fA-F:.]+)\](?::[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class Need:
    """What a request needs: the token action and the policy verb."""

    action: str
    verb: Verb
    # The tags list: allowed to anyone on a public repository, as pulls are.
    lists_tags: bool = False


def need_of(method: str, route: str) -> Need:
    """The access a registry route needs (tags list: inspect; pulls: read; pushes, every blob
    upload route (its status ``GET`` and cancelling ``DELETE`` included) and the deletion of
    manifests, tags and blobs: push, ``use``)."""
    if method in ("GET", "HEAD") and "/blobs/uploads/" not in route:
        if route.endswith("/tags/list"):
            return Need(PULL, Verb.INSPECT, lists_tags=True)
        return Need(PULL, Verb.READ)
    return Need(PUSH, Verb.USE)


def quoted(value: str) -> str:
    """``value`` as an RFC 9110 quoted-string: ``\\`` and ``"`` escaped, controls dropped."""
    kept = "".join(c for c in value if c == "\t" or " " <= c <= "~" or c >= "\x80")
    return '"' + kept.replace("\\", "\\\\").replace('"', '\\"') + '"'


def realm_of(request: web.Request, auth: AuthService) -> str:
    """The token endpoint URL clients are sent to: ``auth.realm``, else the request's Host
    when it is a plain ``host[:port]``, else the address the connection arrived on."""
    if auth.realm:
        return auth.realm
    host = request.headers.get("Host", "")
    if not is_authority(host):
        host = _local_address(request)
    return f"{request.scheme}://{host}{TOKEN_PATH}"


def is_authority(text: str) -> bool:
    """Whether a Host header is a plain ``host[:port]`` (a DNS name, IPv4 or ``[IPv6]``)."""
    if HOST_PATTERN.fullmatch(text):
        return True
    match = _BRACKETED.fullmatch(text)
    if match is None:
        return False
    try:
        ipaddress.IPv6Address(match.group(1))
    except ValueError:
        return False
    return True


def _local_address(request: web.Request) -> str:
    """``ip:port`` the connection arrived on (``localhost`` when the socket does not say)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return "localhost"
    address, port = str(sockname[0]), int(sockname[1])
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def challenge(
    request: web.Request, message: str | None, scope: str | None, error: str | None = None
) -> RegistryError:
    """A 401 ``UNAUTHORIZED`` with the ``Bearer`` challenge clients answer with a token."""
    auth = request.app[AUTH]
    parts = [f"realm={quoted(realm_of(request, auth))}", f"service={quoted(auth.tokens.service)}"]
    if scope is not None:
        parts.append(f"scope={quoted(scope)}")
    if error is not None:
        parts.append(f"error={quoted(error)}")
    return RegistryError(
        ErrorCode.UNAUTHORIZED,
        message,
        headers={"WWW-Authenticate": "Bearer " + ",".join(parts)},
    )


def authenticate(request: web.Request, scope: str | None) -> Principal:
    """The caller of a registry request; bad credentials get the challenge."""
    auth = request.app[AUTH]
    try:
        return auth.authenticate(request.headers.get("Authorization"), request.remote or "")
    except RegistryError as exc:
        if exc.code is not ErrorCode.UNAUTHORIZED:
            raise
        error = "invalid_token" if "bearer" in exc.message else None
        raise challenge(request, exc.message, scope, error) from None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and authorise ``/v2/`` requests; other paths pass (they check their own)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else None
    if route is None or not route.startswith("/v2"):
        return await handler(request)
    if route in _BASE:
        principal = authenticate(request, None)
        if principal.anonymous and principal.access is None:
            raise challenge(request, None, None)
        return await handler(request)
    if route == _CATALOG:
        scope = f"{REGISTRY}:{CATALOG}:{ALL}"
        principal = authenticate(request, scope)
        if principal.anonymous:
            raise challenge(request, None, scope)
        if not principal.holds(REGISTRY, CATALOG, ALL):
            raise challenge(request, None, scope, "insufficient_scope")
        request[PRINCIPAL] = principal
        return await handler(request)
    return await _repository_request(request, handler, route)


async def _repository_request(
    request: web.Request, handler: Handler, route: str
) -> web.StreamResponse:
    auth = request.app[AUTH]
    name = request.match_info["name"]
    ref = auth.resolver.locate(name, request.query.get("ns"), request.host)
    hosted = auth.resolver.is_hosted(ref)
    reading = request.method in ("GET", "HEAD")
    principal = _authorised(request, ref, route, refuse_writes=not hosted)
    request[PRINCIPAL] = principal
    if hosted:
        request[TARGET] = hosted_target(ref.tenancy, ref.name, ref.path)
        if not reading:
            _ensure_repository(request, principal, ref)
        request[HOSTED_REPO] = ref
        return await _hosted_request(request, handler, route)
    target = await auth.target_of(ref)
    request[TARGET] = target
    if reading and route.endswith("/blobs/{digest}"):
        await auth.links.prove_blob(target, Digest.parse(request.match_info["digest"]))
    manifest = reading and route.endswith("/manifests/{reference}")
    if manifest and is_digest(request.match_info["reference"]):
        await auth.links.prove_manifest(target, Digest.parse(request.match_info["reference"]))
    response = await handler(request)
    digest = response.headers.get("Docker-Content-Digest")
    if manifest and response.status == 200 and digest:
        # Before the body goes out: a manifest this repository cannot prove is not sent.
        reference = request.match_info["reference"]
        await auth.links.record_manifest(target, reference, Digest.parse(digest))
        if auth.identity.repository(ref.tenancy, ref.name) is None:
            now = auth.tokens.now()
            auth.identity.create_repository(ref.tenancy, ref.name, now, exist_ok=True)
    return response


def _authorised(
    request: web.Request, ref: RepoRef, route: str, *, refuse_writes: bool
) -> Principal:
    """The caller, allowed what the route needs of ``ref``; a write to a pull-through cache
    (``refuse_writes``) is ``DENIED`` saying so, whoever logged in asks."""
    auth = request.app[AUTH]
    name = request.match_info["name"]
    need = need_of(request.method, route)
    scope = f"{REPOSITORY}:{name}:{need.action}"
    principal = authenticate(request, scope)
    if refuse_writes and request.method not in ("GET", "HEAD"):
        if principal.anonymous:
            raise challenge(request, None, scope)
        raise RegistryError(
            ErrorCode.DENIED,
            f"{name} is a pull-through cache: nothing can be pushed to it or deleted from it",
            detail={"name": name},
        )
    if need.lists_tags:
        allowed = auth.authorizer.permits_tag_listing(principal, ref)
    else:
        allowed = auth.authorizer.permits(principal, ref, need.verb)
    held = principal.holds(REPOSITORY, name, need.action)
    if not (allowed and held):
        if principal.anonymous:
            raise challenge(request, None, scope)
        if not allowed:
            raise RegistryError(ErrorCode.DENIED, detail={"name": name, "action": need.action})
        raise challenge(request, None, scope, "insufficient_scope")
    return principal


def _ensure_repository(request: web.Request, principal: Principal, ref: RepoRef) -> None:
    """Create the record of a hosted repository on its first push when ``principal`` may
    manage it; ``DENIED`` otherwise."""
    auth = request.app[AUTH]
    if auth.identity.repository(ref.tenancy, ref.name) is not None:
        return
    if request.method == "DELETE":
        raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": ref.path})
    if not auth.authorizer.permits(principal, ref, Verb.MANAGE):
        raise RegistryError(
            ErrorCode.DENIED,
            "the repository does not exist, and creating it needs manage on it",
            detail={"name": ref.path},
        )
    auth.identity.create_repository(ref.tenancy, ref.name, auth.tokens.now(), exist_ok=True)


async def _hosted_request(request: web.Request, handler: Handler, route: str) -> web.StreamResponse:
    """A request to a hosted repository: served from what it holds, never from upstream."""
    if request.method in ("GET", "HEAD") and route.endswith("/blobs/{digest}"):
        digest = Digest.parse(request.match_info["digest"])
        if not await request.app[HOSTED].holds_blob(request[TARGET], digest):
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
    return await handler(request)


def visible_repositories(request: web.Request, names: list[str]) -> list[str]:
    """The catalog names the caller may inspect on the face it asked (all of them when auth
    is off); a tenancy rule's entries are shown as the path they are pulled by."""
    principal = request.get(PRINCIPAL)
    if principal is None or AUTH not in request.app:
        return names
    auth = request.app[AUTH]
    visible = []
    for name in names:
        path = auth.resolver.catalog_path(name, request.host)
        if path is None:
            continue
        try:
            ref = auth.resolver.locate(path, None, request.host)
        except RegistryError:
            continue
        if auth.authorizer.permits(principal, ref, Verb.INSPECT):
            visible.append(path)
    return visible
