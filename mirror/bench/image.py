"""The image a benchmark pulls: a reference (``REPO:TAG`` or ``REPO@DIGEST``) and what its
manifest names (config and layers with their sizes). An index resolves to its linux/amd64
child, or its first one, as a node of that platform would pull."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mirror.oci.media import INDEX_TYPES, MANIFEST_TYPES

ACCEPT = ", ".join(MANIFEST_TYPES)
PLATFORM = ("linux", "amd64")


class ImageError(ValueError):
    """A reference or a manifest the benchmark cannot use (says why)."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A repository and a tag or digest in it."""

    repo: str
    reference: str

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """``REPO:TAG``, ``REPO@DIGEST`` or ``REPO`` (tag ``latest``)."""
        if "@" in text:
            repo, _, digest = text.partition("@")
            return cls(repo, digest)
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            return cls(text[:colon], text[colon + 1 :])
        if not text:
            raise ImageError("an image reference is empty")
        return cls(text, "latest")

    def __str__(self) -> str:
        separator = "@" if ":" in self.reference else ":"
        return f"{self.repo}{separator}{self.reference}"


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob a manifest references."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class Image:
    """A resolved image: the manifest's digest, its config and layers."""

    repo: str
    tag: str
    digest: str
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """The config, then the layers."""
        return (self.config, *self.layers)

    @property
    def size(self) -> int:
        """Bytes of every blob."""
        return sum(blob.size for blob in self.blobs)


def _document(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ImageError(f"manifest is not JSON: {error}") from None
    if not isinstance(doc, dict):
        raise ImageError("manifest is not a JSON object")
    return doc


def _blob(entry: Any) -> Blob:
    if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
        raise ImageError("manifest has a descriptor without a digest")
    size = entry.get("size")
    return Blob(entry["digest"], size if isinstance(size, int) and size >= 0 else 0)


def child_digest(body: bytes) -> str | None:
    """For an index, the digest of the child to pull; ``None`` for an image manifest."""
    doc = _document(body)
    if doc.get("mediaType") not in INDEX_TYPES and "manifests" not in doc:
        return None
    children = [entry for entry in doc.get("manifests") or [] if isinstance(entry, dict)]
    if not children:
        raise ImageError("index lists no manifests")
    for entry in children:
        platform = entry.get("platform") or {}
        if (platform.get("os"), platform.get("architecture")) == PLATFORM:
            return _blob(entry).digest
    return _blob(children[0]).digest


def parse_image(repo: str, tag: str, digest: str, body: bytes) -> Image:
    """An :class:`Image` from an image manifest's bytes."""
    doc = _document(body)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError("manifest has no layers list")
    return Image(repo, tag, digest, _blob(doc.get("config")), tuple(_blob(x) for x in layers))
