"""Tags lists and referrers, passed through from upstream and cached for stale-if-error."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from yarl import URL

from mirror.clock import Clock
from mirror.db.metadata import WRITE_FAILED, CachedResponse
from mirror.db.roles import CachedResponses
from mirror.errors import RegistryError, UpstreamThrottled, UpstreamUnavailable
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.oci.media import OCI_INDEX
from mirror.oci.names import TAG_PATTERN
from mirror.pullthrough.blobs import Upstreams
from mirror.upstream.routing import Target

log = logging.getLogger(__name__)

# The spec's referrers tag schema keeps at most this many characters of the encoded digest.
TAG_SCHEMA_REF_LENGTH = 64


def referrers_tag(digest: Digest) -> str:
    """The referrers tag schema's tag for ``digest``: ``<alg>-<ref>`` (e.g. ``sha256-ab12…``)."""
    return f"{digest.algorithm}-{digest.encoded[:TAG_SCHEMA_REF_LENGTH]}"


def empty_index() -> dict[str, object]:
    """An OCI image index with no manifests: the referrers answer when nothing refers."""
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def _index(body: bytes) -> dict[str, Any]:
    """An upstream referrers index as a JSON object with a ``manifests`` list; a broken one
    (not JSON, not an index) is the upstream failing, ``UpstreamUnavailable``, so a kept
    answer can still be served."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UpstreamUnavailable("upstream referrers index is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.setdefault("manifests", []), list):
        raise UpstreamUnavailable("upstream referrers index is not an image index")
    return doc


@dataclass(frozen=True, slots=True)
class Listing:
    """A JSON answer to pass on: body, content type, extra headers, and whether it is stale."""

    body: bytes
    content_type: str
    headers: dict[str, str]
    stale: bool = False


class ListingService:
    """``tags/list`` and ``referrers`` through the cache."""

    def __init__(
        self,
        metadata: CachedResponses,
        upstreams: Upstreams,
        metrics: Metrics,
        clock: Clock,
        *,
        ttl: float,
        max_stale: float,
    ) -> None:
        self._metadata = metadata
        self._upstreams = upstreams
        self._metrics = metrics
        self._clock = clock
        self._ttl = ttl
        self._max_stale = max_stale

    async def tags(self, target: Target, n: int | None, last: str | None) -> Listing:
        """The upstream's tags of ``target``, with the name and ``Link`` in the client's terms."""
        key = f"n={n}&last={last}"

        async def fetch() -> CachedResponse:
            doc, link = await self._upstreams(target.upstream).get_tags(target.repo, n, last)
            tags = doc.get("tags")
            headers: tuple[tuple[str, str], ...] = ()
            next_page = _next_page(link, target) if link else None
            if next_page:
                headers = (("Link", f'<{next_page}>; rel="next"'),)
            if isinstance(tags, list):
                # The spec wants lexical order and n/last honoured; distribution 2.8 does
                # neither, so the mirror paginates what it got (a no-op on a compliant page).
                # Only names that are tags: anything else (a line break, ``>``) could break
                # the ``Link`` header built from the last one.
                tags = sorted(
                    t
                    for t in tags
                    if isinstance(t, str)
                    and TAG_PATTERN.fullmatch(t)
                    and (last is None or t > last)
                )
                if n is not None and len(tags) > n:
                    tags = tags[:n]
                    next_page = (
                        f"/v2/{target.name}/tags/list?last={tags[-1]}&n={n}" if tags else None
                    )
                    headers = (("Link", f'<{next_page}>; rel="next"'),) if next_page else ()
            doc = {**doc, "name": target.name, "tags": tags}
            return CachedResponse(
                json.dumps(doc).encode(), "application/json", headers, self._clock.now()
            )

        return await self._through("tags", target, key, fetch)

    async def referrers(self, target: Target, digest: Digest, artifact_type: str | None) -> Listing:
        """The referrers index of ``digest``, filtered by ``artifact_type`` if given."""
        key = f"{digest}|{artifact_type or ''}"

        async def fetch() -> CachedResponse:
            client = self._upstreams(target.upstream)
            try:
                body, content_type, headers = await client.get_referrers(
                    target.repo, digest, artifact_type
                )
            except RegistryError as exc:
                if exc.status != 404:
                    raise
                # No referrers API upstream (distribution 2.8 answers 404): the spec's
                # fallback, the index tagged with the referrers tag schema, or an empty one.
                body, content_type, headers = await self._tag_schema(target, digest), OCI_INDEX, {}
            applied = headers.get("OCI-Filters-Applied", "")
            if artifact_type and "artifactType" not in applied:
                doc = _index(body)
                doc["manifests"] = [
                    m for m in _descriptors(doc) if m.get("artifactType") == artifact_type
                ]
                body = json.dumps(doc).encode()
            out = (("OCI-Filters-Applied", "artifactType"),) if artifact_type else ()
            return CachedResponse(body, content_type or OCI_INDEX, out, self._clock.now())

        return await self._through("referrers", target, key, fetch)

    async def _tag_schema(self, target: Target, digest: Digest) -> bytes:
        """The index the upstream holds under ``referrers_tag(digest)``, or an empty index."""
        client = self._upstreams(target.upstream)
        try:
            found = await client.get_manifest(target.repo, referrers_tag(digest), (OCI_INDEX,))
        except RegistryError as exc:
            if exc.status != 404:
                raise
            return json.dumps(empty_index()).encode()
        kept = _descriptors(_index(found.body))
        return json.dumps({**empty_index(), "manifests": kept}).encode()

    async def _through(
        self, kind: str, target: Target, key: str, fetch: Callable[[], Awaitable[CachedResponse]]
    ) -> Listing:
        cached = self._metadata.response(kind, target.upstream, target.repo, key)
        now = self._clock.now()
        if cached is not None and now - cached.fetched_at < self._ttl:
            self._metrics.cache_hits.labels(kind).inc()
            return Listing(cached.body, cached.content_type, dict(cached.headers))
        self._metrics.cache_misses.labels(kind).inc()
        try:
            fresh = await _fresh(kind, fetch)
        except (UpstreamUnavailable, UpstreamThrottled) as exc:
            if cached is None or now - cached.fetched_at > self._ttl + self._max_stale:
                raise
            log.warning("serving stale %s of %s/%s: %s", kind, target.upstream, target.repo, exc)
            self._metrics.stale_served.inc()
            return Listing(cached.body, cached.content_type, dict(cached.headers), stale=True)
        try:
            self._metadata.set_response(kind, target.upstream, target.repo, key, fresh)
        except WRITE_FAILED as exc:
            log.warning("cannot keep %s of %s/%s (%s)", kind, target.upstream, target.repo, exc)
            self._metrics.metadata_write_failures.labels("response").inc()
        return Listing(fresh.body, fresh.content_type, dict(fresh.headers))


def _next_page(link: str, target: Target) -> str | None:
    """The upstream's next tags page in the client's terms: only its ``n`` and ``last``, on
    the mirror's own path (a hostile upstream's ``Link`` could name any host, or break the
    header); ``None`` when it gives neither, or gives an invalid tag."""
    try:
        query = URL(link.partition("<")[2].partition(">")[0]).query
    except ValueError:
        return None
    n, last = query.get("n", ""), query.get("last", "")
    if not (n or last) or (n and not (n.isascii() and n.isdigit() and len(n) <= 18)):
        return None
    if last and not TAG_PATTERN.fullmatch(last):
        return None
    params = "&".join(f"{k}={v}" for k, v in (("last", last), ("n", n)) if v)
    return f"/v2/{target.name}/tags/list?{params}"


async def _fresh(kind: str, fetch: Callable[[], Awaitable[CachedResponse]]) -> CachedResponse:
    """``fetch()``; an upstream answer nested past the JSON parser's recursion limit (no real
    tags list or index nests more than a few levels) is the upstream failing, as a body that
    is not JSON is: ``UpstreamUnavailable``, so a kept answer is served stale, else 503."""
    try:
        return await fetch()
    except RecursionError:
        raise UpstreamUnavailable(f"upstream {kind} answer nests too deeply to parse") from None


def _descriptors(doc: dict[str, Any]) -> list[dict[str, object]]:
    """The index's ``manifests`` entries that are objects (a hostile upstream may send junk)."""
    return [m for m in doc["manifests"] if isinstance(m, dict)]
