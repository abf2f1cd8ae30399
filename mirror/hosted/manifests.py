"""Checking a pushed manifest (image-spec v1.1, Docker schema2): its JSON, its media type
against ``Content-Type``, its descriptors, and what it refers to.

Every failure is ``MANIFEST_INVALID`` with a one-line reason, except a body over the size
limit (``SIZE_INVALID``, 413).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.oci.media import INDEX_TYPES, MANIFEST_TYPES


@dataclass(frozen=True, slots=True)
class PushedManifest:
    """A checked manifest: its media type, the blobs and child manifests it requires in its
    repository, and the descriptor fields the referrers answer needs."""

    media_type: str
    blobs: tuple[Digest, ...]
    children: tuple[Digest, ...]
    subject: Digest | None
    artifact_type: str | None
    annotations: dict[str, str] | None

    @property
    def references(self) -> tuple[str, ...]:
        """Every digest it refers to, as the manifest record keeps them."""
        return tuple(str(d) for d in (*self.blobs, *self.children))


def _invalid(reason: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, detail={"reason": reason})


def _descriptor(value: Any, where: str) -> Digest:
    """The digest of a well-formed descriptor (``mediaType``, ``digest``, ``size``)."""
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor")
    if not isinstance(value.get("mediaType"), str):
        raise _invalid(f"{where} has no mediaType")
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where} has no valid size")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise _invalid(f"{where} has no digest")
    try:
        return Digest.parse(digest)
    except RegistryError:
        raise _invalid(f"{where} has an invalid digest") from None


def _descriptors(doc: dict[str, Any], key: str, *, required: bool) -> tuple[Digest, ...]:
    value = doc.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list):
        raise _invalid(f"{key} is not a list")
    return tuple(_descriptor(entry, f"{key}[{i}]") for i, entry in enumerate(value))


# Layers a registry is not expected to hold: image-spec's non-distributable layers and Docker's
# foreign layers (Windows base images), fetched by clients from their descriptor's ``urls``.
NON_DISTRIBUTABLE = frozenset(
    {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)


def _is_foreign(entry: Any) -> bool:
    """A non-distributable layer naming where it lives (``urls``, http or https only): the
    manifest may be pushed without it, as distribution accepts it."""
    if not isinstance(entry, dict) or entry.get("mediaType") not in NON_DISTRIBUTABLE:
        return False
    urls = entry.get("urls")
    if not isinstance(urls, list) or not urls:
        return False
    if not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
        raise _invalid("a non-distributable layer's urls are not http or https URLs")
    return True


def _required_layers(doc: dict[str, Any]) -> tuple[Digest, ...]:
    """The digests of the layers this repository must hold (all but foreign ones)."""
    layers = _descriptors(doc, "layers", required=True)
    return tuple(
        d for d, entry in zip(layers, doc["layers"], strict=True) if not _is_foreign(entry)
    )


def _document(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _invalid("not JSON") from None
    except RecursionError:
        raise _invalid("nested too deeply") from None
    if not isinstance(doc, dict):
        raise _invalid("not a JSON object")
    return doc


def check_manifest(body: bytes, content_type: str | None, max_bytes: int) -> PushedManifest:
    """Check a pushed manifest body sent with ``content_type``; raises ``SIZE_INVALID`` (413)
    over ``max_bytes``, else ``MANIFEST_INVALID`` with the reason."""
    if len(body) > max_bytes:
        raise RegistryError(
            ErrorCode.SIZE_INVALID,
            f"manifest is larger than the limit of {max_bytes} bytes",
            detail={"size": len(body), "limit": max_bytes},
            status=413,
        )
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in MANIFEST_TYPES:
        raise _invalid(f"Content-Type {declared or '(none)'} is not a manifest media type")
    doc = _document(body)
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion is not 2")
    media_type = doc.get("mediaType", declared)
    if media_type != declared:
        raise _invalid(f"mediaType {media_type!s:.100} does not match Content-Type {declared}")
    if declared in INDEX_TYPES:
        blobs: tuple[Digest, ...] = ()
        children = _descriptors(doc, "manifests", required=True)
    else:
        blobs = (_descriptor(doc.get("config"), "config"),)
        blobs += _required_layers(doc)
        children = ()
    subject = _descriptor(doc["subject"], "subject") if "subject" in doc else None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType is not a string")
    if artifact_type is None and declared not in INDEX_TYPES:
        # image-spec: a referrer's artifact type is its config's media type when not given.
        artifact_type = str(doc["config"]["mediaType"])
    annotations = doc.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    ):
        raise _invalid("annotations is not a map of strings")
    return PushedManifest(declared, blobs, children, subject, artifact_type, annotations)
