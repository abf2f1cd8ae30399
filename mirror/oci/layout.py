"""OCI image layout (image-spec "OCI Image Layout Specification"): a directory holding an
``oci-layout`` marker, an ``index.json`` whose descriptors name the images (a tag is the
``org.opencontainers.image.ref.name`` annotation) and every blob as ``blobs/<alg>/<encoded>``.

Only the standard library and the digest type: the test image builders and the bundle import
and export both read and write layouts through this one module.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror.errors import RegistryError
from mirror.oci.digest import Digest

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


class LayoutError(Exception):
    """A directory that is not a readable image layout, or a blob that is missing or does not
    match its digest; ``path`` names the file, ``reason`` says what is wrong."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor (image-spec "Descriptors"): what a blob is, its digest and size."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, str] | None = None

    @property
    def ref_name(self) -> str | None:
        """The tag this descriptor carries in an ``index.json``, if any."""
        return self.annotations.get(REF_NAME)

    def to_json(self) -> dict[str, Any]:
        """The descriptor as a JSON object (empty fields left out)."""
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.platform is not None:
            doc["platform"] = dict(self.platform)
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc

    @classmethod
    def from_json(cls, doc: object) -> Descriptor:
        """Parse a descriptor object; raises ``ValueError`` when a field is missing or wrong."""
        if not isinstance(doc, dict):
            raise ValueError("a descriptor is a JSON object")
        media_type, digest, size = doc.get("mediaType"), doc.get("digest"), doc.get("size")
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise ValueError("a descriptor needs string mediaType and digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("a descriptor needs a non-negative integer size")
        try:
            parsed = Digest.parse(digest)
        except RegistryError:
            raise ValueError(f"invalid digest {digest!r}") from None
        annotations = doc.get("annotations") or {}
        platform = doc.get("platform")
        return cls(media_type, parsed, size, dict(annotations), platform)


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, indent=2).encode() + b"\n"


class ImageLayout:
    """An image layout rooted at ``root``; obtained with :meth:`create` or :meth:`open`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, root: Path) -> ImageLayout:
        """The layout at ``root``, made (marker, empty index, blob folder) where missing."""
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = root / LAYOUT_FILE
        if not marker.exists():
            marker.write_bytes(_json_bytes({"imageLayoutVersion": LAYOUT_VERSION}))
        index = root / INDEX_FILE
        if not index.exists():
            index.write_bytes(_json_bytes({"schemaVersion": 2, "manifests": []}))
        return cls(root)

    @classmethod
    def open(cls, root: Path) -> ImageLayout:
        """An existing layout; raises ``LayoutError`` without a readable ``oci-layout``
        marker of a known version."""
        marker = root / LAYOUT_FILE
        try:
            version = json.loads(marker.read_bytes()).get("imageLayoutVersion")
        except (OSError, ValueError, AttributeError):
            raise LayoutError(marker, "not an OCI image layout marker") from None
        if version != LAYOUT_VERSION:
            raise LayoutError(marker, f"unknown imageLayoutVersion {version!r}")
        return cls(root)

    def blob_path(self, digest: Digest) -> Path:
        """Where the blob of ``digest`` lives (whether or not it is there)."""
        return self.root / "blobs" / digest.algorithm / digest.encoded

    def has_blob(self, digest: Digest) -> bool:
        """Whether the layout holds the blob of ``digest``."""
        return self.blob_path(digest).is_file()

    def write_blob(self, data: bytes) -> Digest:
        """Store ``data`` under its sha256 digest (atomically; a blob already there is kept)."""
        digest = Digest.of(data)
        path = self.blob_path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, path)
        return digest

    def read_blob(self, digest: Digest) -> bytes:
        """The blob's bytes; raises ``LayoutError`` if it is missing or its digest differs."""
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise LayoutError(path, "blob missing") from None
        actual = Digest.of(data, digest.algorithm)
        if actual != digest:
            raise LayoutError(path, f"content has digest {actual}")
        return data

    def _index_doc(self) -> dict[str, Any]:
        path = self.root / INDEX_FILE
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            raise LayoutError(path, "no readable index.json") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("manifests", []), list):
            raise LayoutError(path, "index.json is not an image index")
        return doc

    def manifests(self) -> list[Descriptor]:
        """The descriptors of ``index.json``; raises ``LayoutError`` on a malformed index."""
        entries = self._index_doc().get("manifests", [])
        try:
            return [Descriptor.from_json(entry) for entry in entries]
        except ValueError as exc:
            raise LayoutError(self.root / INDEX_FILE, str(exc)) from None

    def entries(self) -> list[dict[str, Any]]:
        """The entries of ``index.json`` as JSON objects (for a writer that keeps them)."""
        return [e for e in self._index_doc().get("manifests", []) if isinstance(e, dict)]

    def write_index(self, entries: list[dict[str, Any]]) -> None:
        """Replace ``index.json`` with an image index of ``entries`` (atomically)."""
        doc = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries}
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(_json_bytes(doc))
        os.replace(temp, self.root / INDEX_FILE)

    def resolve(self, tag: str) -> Descriptor:
        """The descriptor tagged ``tag``; raises ``KeyError`` if there is none."""
        for descriptor in self.manifests():
            if descriptor.ref_name == tag:
                return descriptor
        raise KeyError(tag)

    def tag(self, tag: str, descriptor: Descriptor) -> Descriptor:
        """Point ``tag`` at ``descriptor`` in ``index.json`` (replacing an earlier entry of that
        tag, keeping the others); returns the entry as written."""
        doc = self._index_doc()
        kept = [
            entry
            for entry in doc.get("manifests", [])
            if entry.get("annotations", {}).get(REF_NAME) != tag
        ]
        entry = Descriptor(
            descriptor.media_type,
            descriptor.digest,
            descriptor.size,
            {**descriptor.annotations, REF_NAME: tag},
            descriptor.platform,
        )
        doc["manifests"] = [*kept, entry.to_json()]
        (self.root / INDEX_FILE).write_bytes(_json_bytes(doc))
        return entry
