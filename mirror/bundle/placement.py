"""Where an imported image goes: the pull-through cache, recorded as if it had been pulled
from its source registry (so ``ctr`` with a ``hosts.toml`` for that registry, or ``docker``
with ``registry-mirrors``, pulls it by its usual name), or a hosted repository under
``TENANCY/PREFIX``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mirror.blobstore.interface import BlobStore
from mirror.bundle.content import BundleManifest, ImageContent, Refused
from mirror.clock import Clock
from mirror.db.metadata import CachedResponse, ManifestRecord, TagRecord
from mirror.db.roles import CachedResponses, Links, Manifests, Repositories, Tags
from mirror.errors import RegistryError
from mirror.hosted.names import hosted_key
from mirror.hosted.repositories import HostedRepositories, hosted_target
from mirror.oci.media import OCI_INDEX, parse_manifest
from mirror.oci.reflist import ImageRef, ReferenceListError, is_tag_only, parse_reference
from mirror.pullthrough.listing import empty_index
from mirror.upstream.routing import Router, Target

# Where a cached referrers answer of the pull-through cache is kept (``ListingService``).
REFERRERS_KIND = "referrers"


@dataclass(frozen=True, slots=True)
class Destination:
    """A resolved place for one image: the metadata key, repository and tag."""

    target: Target
    tag: str | None
    shown: str

    def __str__(self) -> str:
        return self.shown


class Placement(Protocol):
    """Resolves an image's name to a destination and records a verified image there."""

    def destination(self, ref_name: str) -> Destination:
        """Where the image named ``ref_name`` goes; raises ``Refused``."""
        ...

    async def place(self, destination: Destination, content: ImageContent) -> bool:
        """Record the image (its blobs are stored); whether anything changed."""
        ...


class CacheRecords(Tags, Manifests, Repositories, Links, CachedResponses, Protocol):
    """The metadata the placements write: manifests, tags, repositories, links, referrers."""


def _refused(reason: str) -> Refused:
    return Refused(reason)


def _source(ref_name: str) -> ImageRef:
    try:
        return parse_reference(ref_name)
    except ReferenceListError as exc:
        raise _refused(str(exc)) from None


class CachePlacement:
    """Into the pull-through cache of ``router``'s upstreams."""

    def __init__(
        self, store: BlobStore, metadata: CacheRecords, router: Router, clock: Clock
    ) -> None:
        self._store = store
        self._metadata = metadata
        self._router = router
        self._clock = clock

    def destination(self, ref_name: str) -> Destination:
        """The cache of the reference's registry, which must be a configured upstream."""
        if is_tag_only(ref_name):
            raise _refused(f"the name {ref_name!r} is only a tag: import it with --into")
        source = _source(ref_name)
        try:
            target = self._router.resolve(source.repository, source.registry)
        except RegistryError:
            raise _refused(
                f"no upstream {source.registry} is configured: nothing would serve it"
            ) from None
        return Destination(target, source.tag, f"cache {target.upstream}/{target.repo}")

    async def place(self, destination: Destination, content: ImageContent) -> bool:
        """Store the manifests (children first), the repository, the tag and the referrers."""
        target, now = destination.target, self._clock.now()
        changed = False
        for manifest in [*content.manifests, *content.referrers]:
            changed |= await self._put(manifest, now)
        self._metadata.add_repository(target.upstream, target.repo)
        root = content.root
        if destination.tag is not None:
            old = self._metadata.tag(target.upstream, target.repo, destination.tag)
            if old is None or old.digest != str(root.digest):
                changed = True
            record = TagRecord(str(root.digest), root.media_type, len(root.body), now)
            self._metadata.set_tag(target.upstream, target.repo, destination.tag, record)
        for subject, referrers in _by_subject(content.referrers).items():
            changed |= self._add_referrers(target, subject, referrers, now)
        return changed

    async def _put(self, manifest: BundleManifest, now: float) -> bool:
        if self._metadata.manifest(manifest.digest) is not None and (
            await self._store.stat(manifest.digest) is not None
        ):
            return False
        info = parse_manifest(manifest.body, manifest.media_type)
        await self._store.put(manifest.digest, manifest.body)
        record = ManifestRecord(info.media_type, len(manifest.body), info.references, now)
        self._metadata.set_manifest(manifest.digest, record)
        return True

    def _add_referrers(
        self, target: Target, subject: str, referrers: list[BundleManifest], now: float
    ) -> bool:
        """The referrers answer of ``subject`` as the cache keeps it, with these added."""
        key = f"{subject}|"
        kept = self._metadata.response(REFERRERS_KIND, target.upstream, target.repo, key)
        doc: dict[str, Any] = json.loads(kept.body) if kept is not None else empty_index()
        listed = {m.get("digest") for m in doc["manifests"]}
        added = [referrer_descriptor(r) for r in referrers if str(r.digest) not in listed]
        if not added:
            return False
        doc["manifests"] = [*doc["manifests"], *added]
        record = CachedResponse(json.dumps(doc).encode(), OCI_INDEX, (), now)
        self._metadata.set_response(REFERRERS_KIND, target.upstream, target.repo, key, record)
        return True


def referrer_descriptor(referrer: BundleManifest) -> dict[str, Any]:
    """The referrers API's descriptor of a referrer: type, digest, size, artifactType and
    annotations (image-spec "Listing Referrers")."""
    doc = json.loads(referrer.body)
    artifact = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
    found: dict[str, Any] = {
        "mediaType": referrer.media_type,
        "digest": str(referrer.digest),
        "size": len(referrer.body),
    }
    if artifact:
        found["artifactType"] = artifact
    if doc.get("annotations"):
        found["annotations"] = doc["annotations"]
    return found


def _by_subject(referrers: list[BundleManifest]) -> dict[str, list[BundleManifest]]:
    grouped: dict[str, list[BundleManifest]] = {}
    for referrer in referrers:
        if referrer.subject:
            grouped.setdefault(referrer.subject, []).append(referrer)
    return grouped


class HostedPlacement:
    """Into hosted repositories ``PREFIX/<source repository>`` of ``tenancy`` (created as
    private repositories where missing, through ``create_repository``)."""

    def __init__(
        self,
        hosted: HostedRepositories,
        links: CacheRecords,
        tenancy: str,
        prefix: str,
        create_repository: Callable[[str, str], None],
    ) -> None:
        self._hosted = hosted
        self._links = links
        self._tenancy = tenancy
        self._prefix = prefix.strip("/")
        self._create = create_repository

    def destination(self, ref_name: str) -> Destination:
        """``PREFIX/<repo>`` (the source host dropped, like ``skopeo sync``); a bare tag goes
        to ``PREFIX`` itself."""
        tag: str | None = ref_name
        if is_tag_only(ref_name):
            repo = self._prefix
        else:
            source = _source(ref_name)
            repo = "/".join(p for p in (self._prefix, source.repository) if p)
            tag = source.tag
        if not repo:
            raise _refused(f"{ref_name!r} is only a tag: --into needs a repository prefix")
        target = hosted_target(self._tenancy, repo, f"{self._tenancy}/{repo}")
        return Destination(target, tag, f"hosted {self._tenancy}/{repo}")

    async def place(self, destination: Destination, content: ImageContent) -> bool:
        """Link the blobs, push the manifests by digest (children first), then the tag."""
        target = destination.target
        try:
            self._create(self._tenancy, target.repo)
            self._links.link(hosted_key(self._tenancy), target.repo, list(content.blobs))
            for manifest in [*content.manifests, *content.referrers]:
                await self._hosted.put_manifest(
                    target, str(manifest.digest), manifest.body, manifest.media_type
                )
            if destination.tag is not None:
                root = content.root
                await self._hosted.put_manifest(target, destination.tag, root.body, root.media_type)
        except RegistryError as exc:
            raise _refused(f"{exc.code.name}: {exc.message} {exc.detail or ''}".strip()) from None
        return True
