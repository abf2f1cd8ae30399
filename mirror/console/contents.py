"""What repositories hold, for the pages: read from retention's inventory (the same facts the
rules judge) and the manifests' own bodies (layers, platforms, artifact types)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mirror.blobstore.interface import BlobStore
from mirror.errors import RegistryError
from mirror.oci.digest import Digest
from mirror.retention.inventory import Image, Inventory

Records = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Summary:
    """A repository's line in the list: images, bytes, last push (cached) and last pull."""

    images: int = 0
    size: int = 0
    last_push: float | None = None
    last_pull: float | None = None


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer (or the config) of an image manifest."""

    digest: str
    media_type: str
    size: int


@dataclass
class ImageView:
    """An image of a repository as its page shows it."""

    image: Image
    layers: list[Layer] = field(default_factory=list)
    config: Layer | None = None
    created: str | None = None
    # An index's children: (digest, "os/arch[/variant]", media type, size).
    platforms: list[tuple[str, str, str, int]] = field(default_factory=list)
    artifact_type: str | None = None
    # Manifests whose subject is this one: (digest, artifact type or media type, size).
    referrers: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Manifest, config and layers together."""
        config = self.config.size if self.config else 0
        return self.image.size + config + sum(x.size for x in self.layers)


def images_of(inventory: Inventory, records: Records) -> list[Image]:
    """The images kept under any of ``records`` (``(upstream key, repo)`` pairs)."""
    wanted = set(records)
    return [i for i in inventory.images if (i.upstream, i.repo) in wanted]


def summary(inventory: Inventory, records: Records) -> Summary:
    """The list line of the repository kept under ``records`` (its size: manifests only; add
    :func:`blob_sizes`)."""
    images = images_of(inventory, records)
    if not images:
        return Summary()
    pulls = [i.last_pull for i in images if i.last_pull is not None]
    return Summary(
        len(images),
        sum(i.size for i in images),
        max(i.cached_at for i in images),
        max(pulls) if pulls else None,
    )


async def blob_sizes(store: BlobStore, inventory: Inventory, records: Records) -> int:
    """Bytes of the distinct blobs the repository's manifests reference (config and layers)."""
    seen: set[Digest] = set()
    total = 0
    for image in images_of(inventory, records):
        for ref in inventory.references.get(image.digest, ()):
            if ref in seen or ref in inventory.manifests:
                continue
            seen.add(ref)
            total += await store.stat(ref) or 0
    return total


async def views_of(store: BlobStore, images: list[Image]) -> list[ImageView]:
    """Every image with what its manifest says."""
    return [await _view(store, image) for image in images]


def referrers_of(index: bytes) -> list[tuple[str, str, int]]:
    """The lines of a referrers index (the referrers API's answer)."""
    doc = _json(index) or {}
    found = []
    for entry in doc.get("manifests") or []:
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
            kind = entry.get("artifactType") or entry.get("mediaType") or ""
            size = entry.get("size")
            found.append((entry["digest"], str(kind), size if isinstance(size, int) else 0))
    return found


async def _view(store: BlobStore, image: Image) -> ImageView:
    view = ImageView(image)
    doc = _json(await store.get(image.digest))
    if doc is None:
        return view
    artifact = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
    view.artifact_type = artifact if isinstance(artifact, str) else None
    for child in doc.get("manifests") or []:
        if isinstance(child, dict):
            view.platforms.append(_platform(child))
    config = _layer(doc.get("config"))
    if config is not None:
        view.config = config
        body = _json(await store.get(Digest.parse(config.digest)))
        created = body.get("created") if body else None
        view.created = created if isinstance(created, str) else None
    view.layers = [x for x in map(_layer, doc.get("layers") or []) if x is not None]
    return view


def _json(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _layer(value: object) -> Layer | None:
    if not isinstance(value, dict):
        return None
    digest, media_type, size = value.get("digest"), value.get("mediaType"), value.get("size")
    if not isinstance(digest, str) or not isinstance(size, int):
        return None
    try:
        Digest.parse(digest)
    except RegistryError:
        return None
    return Layer(digest, media_type if isinstance(media_type, str) else "", size)


def _platform(child: dict[str, Any]) -> tuple[str, str, str, int]:
    platform = child.get("platform") or {}
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    name = "/".join(str(p) for p in parts if p) or "unknown"
    size = child.get("size")
    size = size if isinstance(size, int) else 0
    return (str(child.get("digest", "")), name, str(child.get("mediaType", "")), size)
