"""The content of hosted repositories: manifests and tags pushed, read back and deleted.

A hosted repository ``<tenancy>/<repo>`` is recorded in the metadata store under upstream key
``hosted_key(tenancy)`` and repo ``<repo>``: its links are what it holds (blobs linked when an
upload commits, manifests when they are pushed), its tags are authoritative (no upstream is
ever asked), and the referrers of each subject are kept as one record per subject.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mirror.blobstore.interface import BlobStore
from mirror.clock import Clock
from mirror.db.metadata import CachedResponse, ManifestRecord, TagRecord
from mirror.db.roles import (
    CachedResponses,
    Eviction,
    Links,
    Manifests,
    Pulls,
    Repositories,
    Tags,
)
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.manifests import PushedManifest, check_manifest
from mirror.hosted.names import REFERRERS, hosted_key
from mirror.hosted.quota import TenancyQuotas
from mirror.oci.digest import Digest, is_digest
from mirror.oci.media import (
    OCI_INDEX,
)
from mirror.oci.names import validate_tag
from mirror.pullthrough.manifests import Manifest, negotiate
from mirror.upstream.routing import Target

# The prefix every hosted key starts with.
HOSTED_PREFIX = hosted_key("")


def is_hosted(target: Target) -> bool:
    """Whether a resolved target is a hosted repository (no upstream behind it)."""
    return target.upstream.startswith(HOSTED_PREFIX)


def tenancy_of(target: Target) -> str:
    """The tenancy of a hosted target."""
    return target.upstream[len(HOSTED_PREFIX) :]


def hosted_target(tenancy: str, repo: str, path: str) -> Target:
    """The target of hosted repository ``repo`` of ``tenancy``, requested as ``path``."""
    return Target(hosted_key(tenancy), repo, path)


class HostedRecords(
    Tags, Manifests, Repositories, Links, Pulls, CachedResponses, Eviction, Protocol
):
    """The metadata hosted repositories live in, with the deletions they need."""

    def drop_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Forget that ``repo`` at ``upstream`` references ``digest``; whether it did."""
        ...

    def delete_tag(self, upstream: str, repo: str, tag: str, at: float) -> TagRecord | None:
        """Remove a tag; the record it had, or ``None``."""
        ...

    def bury(self, upstream: str, repo: str, digest: Digest, at: float) -> None:
        """Note that ``digest`` was deleted from ``repo`` (for the garbage collector)."""
        ...


@dataclass(frozen=True, slots=True)
class Pushed:
    """The answer to a manifest push: its digest and the subject it refers to, if any."""

    digest: Digest
    subject: Digest | None


class HostedRepositories:
    """Pushes, reads and deletes the content of hosted repositories."""

    def __init__(
        self,
        store: BlobStore,
        metadata: HostedRecords,
        clock: Clock,
        quotas: TenancyQuotas,
        *,
        max_manifest_bytes: int,
    ) -> None:
        self._store = store
        self._metadata = metadata
        self._clock = clock
        self.quotas = quotas
        self.max_manifest_bytes = max_manifest_bytes

    # Push ---------------------------------------------------------------------------------

    async def put_manifest(
        self, target: Target, reference: str, body: bytes, content_type: str | None
    ) -> Pushed:
        """Store a pushed manifest under ``reference`` (a tag or its digest); raises
        ``MANIFEST_INVALID``, ``SIZE_INVALID``, ``DIGEST_INVALID``, ``TAG_INVALID``,
        ``MANIFEST_BLOB_UNKNOWN`` or ``MANIFEST_UNKNOWN`` (a child manifest not here)."""
        expected = Digest.parse(reference) if is_digest(reference) else None
        tag = None if expected else validate_tag(reference)
        pushed = check_manifest(body, content_type, self.max_manifest_bytes)
        digest = Digest.of(body, expected.algorithm if expected else "sha256")
        if expected is not None and digest != expected:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                "the manifest does not hash to the digest it was pushed by",
                detail={"expected": str(expected), "actual": str(digest)},
            )
        await self._require(target, pushed)
        now = self._clock.now()
        with self.quotas.reserve(tenancy_of(target), target.repo, digest, len(body)) as held:
            await self._store.put(digest, body)
            # Checked again with no await before the link: the garbage collector unlinks
            # without one either, so it either sees this manifest or this push sees the unlink.
            self._require_linked(target, pushed)
            record = ManifestRecord(pushed.media_type, len(body), pushed.references, now)
            self._metadata.set_manifest(digest, record)
            self._metadata.link(target.upstream, target.repo, [digest])
            held.commit(target.repo, digest)
        self._metadata.add_repository(target.upstream, target.repo)
        if tag is not None:
            tagged = TagRecord(str(digest), pushed.media_type, len(body), now)
            self._metadata.set_tag(target.upstream, target.repo, tag, tagged)
        if pushed.subject is not None:
            self._add_referrer(target, pushed, digest, len(body))
        return Pushed(digest, pushed.subject)

    async def _require(self, target: Target, pushed: PushedManifest) -> None:
        """Every blob and child manifest ``pushed`` refers to is held by ``target``."""
        for blob in pushed.blobs:
            if not await self.holds_blob(target, blob):
                raise RegistryError(
                    ErrorCode.MANIFEST_BLOB_UNKNOWN,
                    "the manifest refers to a blob this repository does not hold",
                    detail={"digest": str(blob)},
                )
        for child in pushed.children:
            if not await self._holds_manifest(target, child):
                raise RegistryError(
                    ErrorCode.MANIFEST_UNKNOWN,
                    "the index refers to a manifest this repository does not hold",
                    detail={"digest": str(child)},
                )

    def _require_linked(self, target: Target, pushed: PushedManifest) -> None:
        for blob in (*pushed.blobs, *pushed.children):
            if not self._metadata.linked(target.upstream, target.repo, blob):
                raise RegistryError(
                    ErrorCode.MANIFEST_BLOB_UNKNOWN,
                    "the manifest refers to content this repository no longer holds",
                    detail={"digest": str(blob)},
                )

    async def holds_blob(self, target: Target, digest: Digest) -> bool:
        """Whether ``target`` holds blob ``digest`` (linked there, and stored)."""
        linked = self._metadata.linked(target.upstream, target.repo, digest)
        return linked and await self._store.stat(digest) is not None

    async def _holds_manifest(self, target: Target, digest: Digest) -> bool:
        if not self._metadata.linked(target.upstream, target.repo, digest):
            return False
        return self._metadata.manifest(digest) is not None

    def _add_referrer(
        self, target: Target, pushed: PushedManifest, digest: Digest, size: int
    ) -> None:
        assert pushed.subject is not None
        descriptor: dict[str, Any] = {
            "mediaType": pushed.media_type,
            "digest": str(digest),
            "size": size,
        }
        if pushed.artifact_type is not None:
            descriptor["artifactType"] = pushed.artifact_type
        if pushed.annotations:
            descriptor["annotations"] = pushed.annotations
        kept = [d for d in self._referrers(target, pushed.subject) if d["digest"] != str(digest)]
        body = json.dumps([*kept, descriptor]).encode()
        record = CachedResponse(body, "application/json", (), self._clock.now())
        self._metadata.set_response(
            REFERRERS, target.upstream, target.repo, str(pushed.subject), record
        )

    def _referrers(self, target: Target, subject: Digest) -> list[dict[str, Any]]:
        record = self._metadata.response(REFERRERS, target.upstream, target.repo, str(subject))
        if record is None:
            return []
        found = json.loads(record.body)
        return [d for d in found if isinstance(d, dict) and isinstance(d.get("digest"), str)]

    # Read ---------------------------------------------------------------------------------

    async def manifest(self, target: Target, reference: str, accept: Sequence[str]) -> Manifest:
        """The manifest ``reference`` of ``target``, negotiated by ``accept`` as pulled
        manifests are; ``MANIFEST_UNKNOWN`` when the repository does not hold it."""
        found = await self._by_reference(target, reference)
        return await negotiate(found, accept, lambda child: self._by_reference(target, str(child)))

    async def _by_reference(self, target: Target, reference: str) -> Manifest:
        if is_digest(reference):
            digest = Digest.parse(reference)
        else:
            tagged = self._metadata.tag(target.upstream, target.repo, validate_tag(reference))
            if tagged is None:
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference})
            digest = Digest.parse(tagged.digest)
        record = self._metadata.manifest(digest)
        linked = self._metadata.linked(target.upstream, target.repo, digest)
        body = await self._store.get(digest) if linked and record is not None else None
        if record is None or body is None:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference})
        return Manifest(digest, record.media_type, body)

    def record_pull(self, target: Target, manifest: Manifest) -> None:
        """Note that a client pulled this image now (feeds retention's not-pulled rule)."""
        self._metadata.record_pull(target.upstream, target.repo, manifest.digest, self._clock.now())

    def tags(self, target: Target, n: int | None, last: str | None) -> tuple[list[str], bool]:
        """The repository's tags after ``last``, at most ``n``; and whether more follow."""
        names = sorted(
            tag
            for upstream, repo, tag, _ in self._metadata.tags()
            if upstream == target.upstream and repo == target.repo
        )
        if last is not None:
            names = [t for t in names if t > last]
        if n is not None and len(names) > n:
            return names[:n], True
        return names, False

    def referrers(self, target: Target, subject: Digest, artifact_type: str | None) -> bytes:
        """The referrers index of ``subject``: the manifests pushed with it as their
        ``subject`` that this repository still holds, filtered by ``artifact_type``."""
        found = [
            d
            for d in self._referrers(target, subject)
            if self._metadata.linked(target.upstream, target.repo, Digest.parse(d["digest"]))
            and (artifact_type is None or d.get("artifactType") == artifact_type)
        ]
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}).encode()

    # Delete -------------------------------------------------------------------------------

    def delete_manifest(self, target: Target, reference: str) -> None:
        """Delete a tag, or a manifest by digest with every tag pointing at it;
        ``MANIFEST_UNKNOWN`` when the repository does not hold it."""
        now = self._clock.now()
        if not is_digest(reference):
            tag = validate_tag(reference)
            if self._metadata.delete_tag(target.upstream, target.repo, tag, now) is None:
                raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference})
            return
        digest = Digest.parse(reference)
        if not self._metadata.drop_link(target.upstream, target.repo, digest):
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference})
        self.quotas.unlinked(tenancy_of(target), target.repo, digest)
        # Its tags, last pull and tag history here go, as retention's eviction does.
        self._metadata.evict_image(target.upstream, target.repo, digest)
        # What only it referred to here is reclaimed by the collector after its grace.
        self._metadata.bury(target.upstream, target.repo, digest, now)

    def delete_blob(self, target: Target, digest: Digest) -> None:
        """Unlink a blob from the repository (the collector deletes it once nothing refers to
        it); ``BLOB_UNKNOWN`` when the repository does not hold it."""
        if not self._metadata.drop_link(target.upstream, target.repo, digest):
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
        self.quotas.unlinked(tenancy_of(target), target.repo, digest)
        self._metadata.bury(target.upstream, target.repo, digest, self._clock.now())
