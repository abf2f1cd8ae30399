"""Manifest media types, content negotiation and the references a manifest makes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mirror.errors import ErrorCode, RegistryError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

MANIFEST_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# Upper bound on a manifest body (distribution-spec recommends accepting at least 4 MiB).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What the mirror needs to know from a manifest body."""

    media_type: str
    references: tuple[str, ...]
    # For an index: (digest, os, architecture, variant) of each child manifest.
    children: tuple[tuple[str, str, str, str], ...]


def parse_manifest(body: bytes, content_type: str | None) -> ManifestInfo:
    """Read a manifest's media type and referenced digests; ``MANIFEST_INVALID`` if not JSON."""
    doc = _document(body)
    media_type = doc.get("mediaType") or (content_type or "").split(";")[0].strip()
    if not media_type:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    blobs = [_digest_of(doc.get("config")), *_digests(doc, "layers"), *_digests(doc, "blobs")]
    children = tuple(_child(entry) for entry in _list(doc, "manifests") if _digest_of(entry))
    references = [digest for digest in blobs if digest] + [child[0] for child in children]
    return ManifestInfo(str(media_type), tuple(references), children)


def _document(body: bytes) -> dict[str, Any]:
    """The manifest's JSON object; ``MANIFEST_INVALID`` when it is not one, or nests deeper
    than the parser's recursion limit (no real manifest nests more than a few levels)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, detail={"reason": str(exc)}) from None
    except RecursionError:
        reason = "nested too deeply"
        raise RegistryError(ErrorCode.MANIFEST_INVALID, detail={"reason": reason}) from None
    if not isinstance(doc, dict):
        raise RegistryError(ErrorCode.MANIFEST_INVALID, detail={"reason": "not an object"})
    return doc


def _digest_of(descriptor: Any) -> str | None:
    """A descriptor's ``digest``, if it is a descriptor with a string digest."""
    if isinstance(descriptor, dict) and isinstance(descriptor.get("digest"), str):
        return str(descriptor["digest"])
    return None


def _digests(doc: dict[str, Any], key: str) -> list[str | None]:
    """The digests of the descriptors listed under ``key`` (None for malformed entries)."""
    return [_digest_of(entry) for entry in _list(doc, key)]


def _child(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    """(digest, os, architecture, variant) of an index entry."""
    platform = entry.get("platform")
    if not isinstance(platform, dict):
        platform = {}
    return (
        entry["digest"],
        str(platform.get("os", "")),
        str(platform.get("architecture", "")),
        str(platform.get("variant", "")),
    )


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RegistryError(ErrorCode.MANIFEST_INVALID, detail={"reason": f"{key} is not a list"})
    return value


def parse_accept(headers: Sequence[str]) -> list[str]:
    """Media types named by ``Accept`` headers (several headers, comma lists, q-values dropped)."""
    types: list[str] = []
    for header in headers:
        for item in header.split(","):
            media = item.split(";")[0].strip().lower()
            if media:
                types.append(media)
    return types


def acceptable(media_type: str, accept: Sequence[str]) -> bool:
    """Whether a client that sent ``accept`` takes ``media_type``; no Accept takes anything."""
    if not accept:
        return True
    return media_type in accept or "*/*" in accept or "application/*" in accept


def default_platform_child(info: ManifestInfo) -> str | None:
    """The linux/amd64 child of an index, for clients that cannot take indexes (as distribution
    does); else the first child."""
    for digest, os_name, arch, _variant in info.children:
        if os_name == "linux" and arch == "amd64":
            return digest
    return info.children[0][0] if info.children else None
