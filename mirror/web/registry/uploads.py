"""Blob uploads (OCI distribution spec v1.1, "Pushing blobs"): sessions, monolithic and
chunked pushes, status, cancel, and cross-repository mounts.

A session is ``/v2/<name>/blobs/uploads/<uuid>``. Bytes go to the session's file on disk as
they arrive (memory stays flat); at the final ``PUT ?digest=`` they are hashed while they are
installed in the blob store, and become visible (linked to the hosted repository under
``hosted_key(tenancy)``) only when digest and size match.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from aiohttp import web

from mirror.auth.access import RepoRef
from mirror.auth.policy.grammar import Verb
from mirror.auth.scope import PULL, REPOSITORY
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.names import hosted_key
from mirror.hosted.uploads import Session, UploadStore, range_headers
from mirror.oci.digest import Digest
from mirror.oci.names import validate_name
from mirror.web.keys import (
    ANONYMOUS_PUSH,
    AUTH,
    CACHE,
    HOSTED_REPO,
    PRINCIPAL,
    QUOTAS,
    UPLOADS,
    services,
)
from mirror.web.registry.seeding import on_loopback, seeded_repository
from mirror.web.registry.upload_owners import claim, elsewhere, ended
from mirror.web.tier_hosted import HOSTED_COPIES

_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]{1,18})-([0-9]{1,18})(?:/(?:[0-9]+|\*))?")


def cache_namespace(name: str) -> RegistryError:
    """The refusal of a write into a pull-through namespace."""
    return RegistryError(
        ErrorCode.DENIED,
        "this repository is a pull-through cache: it cannot be pushed to",
        detail={"name": name},
    )


def hosted_of(request: web.Request) -> RepoRef:
    """The hosted repository a write addresses: checked by the auth middleware, or (auth
    off) a name no upstream serves when ``server.allow_anonymous_push`` is on and the request
    came in on loopback; else 405."""
    ref: RepoRef | None = request.get(HOSTED_REPO)
    if ref is not None:
        return ref
    name = request.match_info["name"]
    if AUTH in request.app or not request.app[ANONYMOUS_PUSH]:
        raise RegistryError(
            ErrorCode.UNSUPPORTED,
            "this mirror is read-only",
            detail={"method": request.method, "path": request.path},
        )
    seeded = seeded_repository(request, validate_name(name))
    if seeded is None:
        raise cache_namespace(name)
    if not on_loopback(request):
        raise RegistryError(ErrorCode.DENIED, "anonymous pushes are taken on loopback only")
    return seeded


def _store(request: web.Request) -> UploadStore:
    return request.app[UPLOADS]


# The body's read buffer: reading pauses above twice this (per request), and whatever arrived
# is taken as it is (no joining into larger pieces); the store batches pieces for its writes.
READ_BUFFER = 256 * 1024


def _body(request: web.Request) -> AsyncIterator[bytes]:
    request.content.set_read_chunk_size(READ_BUFFER)
    return request.content.iter_any()


def _session(request: web.Request, ref: RepoRef) -> Session:
    return _store(request).get(request.match_info["uuid"], ref.tenancy, ref.name)


def _accepted(session: Session, offset: int, name: str, status: int = 202) -> web.Response:
    headers = range_headers(session, offset)
    headers["Location"] = f"/v2/{name}/blobs/uploads/{session.uuid}"
    return web.Response(status=status, headers=headers)


def _created(request: web.Request, name: str, digest: Digest) -> web.Response:
    return web.Response(
        status=201,
        headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)},
    )


async def _commit(request: web.Request, ref: RepoRef, session: Session, digest: Digest) -> None:
    """Install and link the upload, its bytes reserved in the tenancy's quota meanwhile."""
    quotas = request.app[QUOTAS]
    try:
        held = quotas.reserve(ref.tenancy, ref.name, digest, session.offset())
    except RegistryError:
        _store(request).discard(session)
        raise
    with held:
        await _store(request).commit(session, digest)
        await replicated(request, digest)
        services(request).metadata.link(hosted_key(ref.tenancy), ref.name, [digest])
        held.commit(ref.name, digest)


async def replicated(request: web.Request, digest: Digest) -> None:
    """On a tier, a copy of the committed ``digest`` on each of its holders before the push
    is answered (503 ``UNAVAILABLE`` when too few replicas take one: push it again)."""
    copies = request.app.get(HOSTED_COPIES)
    if copies is not None:
        await copies.replicate(digest)


def _digest_param(request: web.Request) -> Digest:
    text = request.query.get("digest")
    if not text:
        raise RegistryError(ErrorCode.DIGEST_INVALID, "the final PUT needs ?digest=")
    return Digest.parse(text)


async def start(request: web.Request) -> web.Response:
    """``POST /v2/<name>/blobs/uploads/``: a mount (201), a monolithic upload with
    ``?digest=`` (201), or a new session (202)."""
    ref = hosted_of(request)
    name = request.match_info["name"]
    if "mount" in request.query:
        mounted = await _mount(request, ref, request.query["mount"], request.query.get("from"))
        if mounted is not None:
            return _created(request, name, mounted)
    if "digest" in request.query:
        digest = _digest_param(request)
        session = _store(request).start(ref.tenancy, ref.name)
        async with _store(request).lock(session.uuid):
            try:
                await _store(request).append(session, _body(request))
            except BaseException:
                _store(request).discard(session)
                raise
            await _commit(request, ref, session, digest)
        return _created(request, name, digest)
    session = _store(request).start(ref.tenancy, ref.name)
    claim(request, session)
    return _accepted(session, 0, name)


async def _mount(
    request: web.Request, ref: RepoRef, mount: str, source: str | None
) -> Digest | None:
    """The mounted digest, or ``None`` (then a normal session starts) unless the caller may
    read ``source``, a hosted repository the blob is linked to and stored for."""
    try:
        digest = Digest.parse(mount)
    except RegistryError:
        return None
    origin = _readable(request, source) if source else None
    if origin is None:
        return None
    metadata = services(request).metadata
    if not metadata.linked(hosted_key(origin.tenancy), origin.name, digest):
        return None
    copies = request.app.get(HOSTED_COPIES)
    held = await request.app[CACHE].stat(digest)
    size = held if held is not None or copies is None else await copies.size_anywhere(digest)
    if size is None:
        return None
    if held is not None:
        await replicated(request, digest)
    # No await from the check to the link: concurrent pushes cannot pass the quota together;
    # linked before the reservation commits, so a tier's count never misses it in between.
    reservation = request.app[QUOTAS].reserve(ref.tenancy, ref.name, digest, size)
    metadata.link(hosted_key(ref.tenancy), ref.name, [digest])
    reservation.commit(ref.name, digest)
    return digest


def _readable(request: web.Request, source: str) -> RepoRef | None:
    """``source`` as a hosted repository the caller may pull, else ``None``."""
    if AUTH not in request.app:
        try:
            services(request).router.resolve(source, None)
        except RegistryError:
            tenancy, sep, repo = source.partition("/")
            if sep:
                try:
                    return RepoRef(tenancy, validate_name(repo), source)
                except RegistryError:
                    return None
        return None
    auth = request.app[AUTH]
    principal = request[PRINCIPAL]
    try:
        origin = auth.resolver.locate(source, None, request.host)
    except RegistryError:
        return None
    if origin.proxy or not auth.authorizer.permits(principal, origin, Verb.READ):
        return None
    if not principal.holds(REPOSITORY, source, PULL):
        return None
    return origin


def _content_range(request: web.Request) -> tuple[int, int] | None:
    header = request.headers.get("Content-Range")
    if header is None:
        return None
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None or int(match.group(2)) < int(match.group(1)):
        raise RegistryError(
            ErrorCode.BLOB_UPLOAD_INVALID,
            "Content-Range must be <start>-<end>",
            detail={"Content-Range": header},
        )
    return int(match.group(1)), int(match.group(2))


async def _write(request: web.Request, session: Session) -> int:
    """Append the request body (a ``Content-Range`` chunk must continue the upload and be
    exactly as long as it says); the new offset."""
    store = _store(request)
    chunk = _content_range(request)
    if chunk is None:
        return await store.append(session, _body(request))
    first, last = chunk
    expected = last - first + 1
    length = request.content_length
    if length is not None and length != expected:
        raise RegistryError(
            ErrorCode.SIZE_INVALID,
            f"Content-Length {length} does not match Content-Range {first}-{last}",
        )
    offset = await store.append(session, _body(request), start=first)
    if offset - first != expected:
        store.truncate(session, first)
        raise RegistryError(
            ErrorCode.SIZE_INVALID, f"the chunk had {offset - first} bytes, not {expected}"
        )
    return offset


async def patch(request: web.Request) -> web.Response:
    """``PATCH <location>``: a streamed or ``Content-Range`` chunk (202 with ``Range``)."""
    ref = hosted_of(request)
    forwarded = await elsewhere(request, ref)
    if forwarded is not None:
        return forwarded
    session = _session(request, ref)
    async with _store(request).lock(session.uuid):
        session = _session(request, ref)
        offset = await _write(request, session)
    return _accepted(session, offset, request.match_info["name"])


async def finish(request: web.Request) -> web.Response:
    """``PUT <location>?digest=``: the last chunk (optional) and the commit (201)."""
    ref = hosted_of(request)
    forwarded = await elsewhere(request, ref)
    if forwarded is not None:
        return forwarded
    session = _session(request, ref)
    async with _store(request).lock(session.uuid):
        session = _session(request, ref)
        digest = _digest_param(request)
        await _write(request, session)
        await _commit(request, ref, session, digest)
    ended(request, session.uuid)
    return _created(request, request.match_info["name"], digest)


async def status(request: web.Request) -> web.Response:
    """``GET <location>``: the session's progress (204 with ``Range``)."""
    ref = hosted_of(request)
    forwarded = await elsewhere(request, ref)
    if forwarded is not None:
        return forwarded
    session = _session(request, ref)
    return _accepted(session, session.offset(), request.match_info["name"], status=204)


async def cancel(request: web.Request) -> web.Response:
    """``DELETE <location>``: end the session and remove its data (204)."""
    ref = hosted_of(request)
    forwarded = await elsewhere(request, ref)
    if forwarded is not None:
        return forwarded
    session = _session(request, ref)
    async with _store(request).lock(session.uuid):
        _store(request).discard(_session(request, ref))
    ended(request, session.uuid)
    return web.Response(status=204)
