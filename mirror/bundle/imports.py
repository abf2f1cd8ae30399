"""``mirror import``: the images of a bundle, verified, placed into the pull-through cache as
if pulled from their source registry, or into hosted repositories (``--into``).

Per image, everything is checked before anything is visible: manifests are read and hashed
first, then each blob the mirror does not hold yet streams from the bundle into an
uncommitted store writer while it is hashed. Only when every piece verified are the writers
committed and the manifests and tag recorded; on any mismatch every writer of that image is
aborted, so nothing of it appears. A blob or manifest the mirror already holds is neither read
nor written again (importing twice stores nothing twice).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from mirror.blobstore.interface import BlobStore, BlobWriter
from mirror.bundle.content import BundleManifest, ImageContent, Refused
from mirror.bundle.placement import Destination, Placement
from mirror.bundle.source import BundleSource
from mirror.errors import DigestMismatch, RegistryError
from mirror.oci.digest import Digest
from mirror.oci.layout import REF_NAME
from mirror.oci.media import INDEX_TYPES, MAX_MANIFEST_BYTES, parse_manifest
from mirror.verify import Verifier, verified

# Called with (bytes done, bytes total) as blobs are read from the bundle.
OnProgress = Callable[[int, int], None]


@dataclass
class ImageResult:
    """One line of the import report."""

    reference: str
    outcome: str  # added, skipped or refused
    destination: str = ""
    digest: str = ""
    reason: str = ""
    blobs_added: int = 0
    blobs_skipped: int = 0
    bytes_added: int = 0

    def as_json(self) -> dict[str, Any]:
        """The result as the report prints it (empty fields left out)."""
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}


def read_manifest(source: BundleSource, descriptor: dict[str, Any]) -> BundleManifest:
    """The manifest a descriptor names, hashed against it; raises ``Refused``."""
    try:
        digest = Digest.parse(str(descriptor.get("digest")))
    except RegistryError:
        raise Refused(f"invalid digest {descriptor.get('digest')!r}") from None
    if source.size(digest) is None:
        raise Refused(f"manifest {digest} is missing from the bundle")
    body = source.read(digest, MAX_MANIFEST_BYTES)
    if len(body) > MAX_MANIFEST_BYTES:
        raise Refused(f"manifest {digest} is larger than 4 MiB")
    if Digest.of(body, digest.algorithm) != digest:
        raise Refused(f"manifest {digest} does not match its digest (corrupt bundle)")
    try:
        doc = json.loads(body)
        info = parse_manifest(body, descriptor.get("mediaType"))
    except (ValueError, RegistryError):
        raise Refused(f"manifest {digest} is not a valid manifest") from None
    subject = doc.get("subject", {}).get("digest") if isinstance(doc.get("subject"), dict) else None
    return BundleManifest(digest, info.media_type, body, subject)


def gather(source: BundleSource, descriptor: dict[str, Any]) -> ImageContent:
    """Every manifest and blob of the image ``descriptor`` names (an index's children that
    the bundle lacks, as an export of chosen platforms leaves them, are counted, not
    refused); raises ``Refused``."""
    root = read_manifest(source, descriptor)
    content = ImageContent(root)
    _walk(source, root, content)
    return content


def _walk(source: BundleSource, manifest: BundleManifest, content: ImageContent) -> None:
    doc = json.loads(manifest.body)
    if manifest.media_type in INDEX_TYPES:
        for entry in doc.get("manifests", []):
            digest = Digest.parse(entry["digest"])
            if source.size(digest) is None:
                content.missing_children += 1
                continue
            _walk(source, read_manifest(source, entry), content)
    else:
        for blob in [doc.get("config"), *doc.get("layers", []), *doc.get("blobs", [])]:
            if isinstance(blob, dict):
                content.blobs[Digest.parse(blob["digest"])] = int(blob["size"])
    content.manifests.append(manifest)


def attach_referrers(
    source: BundleSource, contents: Iterable[ImageContent], unnamed: list[dict[str, Any]]
) -> list[str]:
    """Give each unnamed entry whose ``subject`` is a manifest of an image to that image;
    returns why each of the others was left out."""
    owner = {m.digest: c for c in contents for m in c.manifests}
    left_out = []
    for descriptor in unnamed:
        try:
            referrer = read_manifest(source, descriptor)
        except Refused as exc:
            left_out.append(exc.reason)
            continue
        image = owner.get(Digest.parse(referrer.subject)) if referrer.subject else None
        if image is None:
            left_out.append(f"{referrer.digest} has no reference name and no subject here")
            continue
        content = ImageContent(referrer)
        _walk(source, referrer, content)
        image.referrers.append(referrer)
        image.blobs.update(content.blobs)
    return left_out


class Importer:
    """Imports images from ``source`` into ``store`` through ``placement``."""

    def __init__(
        self,
        source: BundleSource,
        store: BlobStore,
        placement: Placement,
        on_progress: OnProgress = lambda done, total: None,
    ) -> None:
        self._source = source
        self._store = store
        self._placement = placement
        self._on_progress = on_progress
        self._done = 0
        self._total = 0

    async def run(self) -> list[ImageResult]:
        """Import every named image of the bundle; a result per image (and per unnamed entry
        left out)."""
        named: list[tuple[str, dict[str, Any]]] = []
        unnamed: list[tuple[str, dict[str, Any]]] = []
        for entry in self._source.entries():
            name = (entry.get("annotations") or {}).get(REF_NAME)
            (named if name else unnamed).append((str(name), entry))
        results: list[ImageResult] = []
        planned: list[tuple[str, Destination, ImageContent]] = []
        for name, entry in named:
            try:
                destination = self._placement.destination(name)
                planned.append((name, destination, gather(self._source, entry)))
            except Refused as exc:
                results.append(ImageResult(name, "refused", reason=exc.reason))
        for reason in attach_referrers(
            self._source, [p[2] for p in planned], [e for _, e in unnamed]
        ):
            results.append(ImageResult("(unnamed entry)", "refused", reason=reason))
        self._total = sum(sum(c.blobs.values()) for _, _, c in planned)
        self._on_progress(0, self._total)
        for name, destination, content in planned:
            results.append(await self._one(name, destination, content))
        return results

    async def _one(self, name: str, destination: Destination, content: ImageContent) -> ImageResult:
        result = ImageResult(name, "added", str(destination), str(content.root.digest))
        staged: list[BlobWriter] = []
        try:
            for digest, size in content.blobs.items():
                if await self._store.stat(digest) is not None:
                    result.blobs_skipped += 1
                    self._advance(size)
                    continue
                staged.append(await self._stage(digest, size))
                result.blobs_added += 1
                result.bytes_added += size
            for writer in staged:
                await writer.commit()
            staged = []
            changed = await self._placement.place(destination, content)
        except Refused as exc:
            return ImageResult(name, "refused", str(destination), str(content.root.digest),
                               reason=exc.reason)  # fmt: skip
        finally:
            for writer in staged:
                await writer.abort()
        if not changed and not result.blobs_added:
            result.outcome = "skipped"
        return result

    async def _stage(self, digest: Digest, size: int) -> BlobWriter:
        """An uncommitted writer holding the verified blob; raises ``Refused``."""
        if self._source.size(digest) is None:
            raise Refused(f"blob {digest} is missing from the bundle")
        writer = self._store.create(digest)
        verifier = Verifier(digest, size)
        # A pipeline of worker threads (file reads, hashlib and the store's sealing all release
        # the GIL): chunk n+1 is read while n is hashed and n-1 sealed and written.
        chunks = verified(self._source.stream(digest), verifier, in_thread=True)
        try:
            async with aclosing(chunks):
                async for chunk in chunks:
                    await writer.write(chunk)
                    self._advance(len(chunk))
        except DigestMismatch as exc:
            await writer.abort()
            raise Refused(
                f"blob {digest} does not match its digest ({exc}): corrupt bundle"
            ) from None
        except BaseException:
            await writer.abort()
            raise
        return writer

    def _advance(self, size: int) -> None:
        self._done += size
        self._on_progress(self._done, self._total)
