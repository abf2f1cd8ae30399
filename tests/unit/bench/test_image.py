"""Image references parse as REPO:TAG, REPO@DIGEST or REPO (latest); an index resolves to
its linux/amd64 child; a manifest names its config and layers with sizes."""

from __future__ import annotations

import json

import pytest

from mirror.bench.image import ImageError, ImageRef, child_digest, parse_image
from mirror.oci.media import OCI_INDEX, OCI_MANIFEST

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "repo", "reference"),
    [
        ("library/alpine:3.20", "library/alpine", "3.20"),
        (f"library/alpine@{DIGEST}", "library/alpine", DIGEST),
        ("library/alpine", "library/alpine", "latest"),
        ("team/app:v1", "team/app", "v1"),
    ],
)
def test_references_parse(text: str, repo: str, reference: str) -> None:
    ref = ImageRef.parse(text)
    assert (ref.repo, ref.reference) == (repo, reference)
    assert str(ref) == (text if text != "library/alpine" else "library/alpine:latest")


def test_an_index_resolves_to_its_linux_amd64_child() -> None:
    index = {
        "mediaType": OCI_INDEX,
        "manifests": [
            {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": DIGEST, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
    assert child_digest(json.dumps(index).encode()) == DIGEST
    manifest = {"mediaType": OCI_MANIFEST, "config": {"digest": DIGEST, "size": 2}, "layers": []}
    assert child_digest(json.dumps(manifest).encode()) is None


def test_a_manifest_names_config_and_layers() -> None:
    doc = {
        "config": {"digest": DIGEST, "size": 10},
        "layers": [{"digest": "sha256:" + "b" * 64, "size": 300}],
    }
    image = parse_image("team/app", "v1", "sha256:" + "c" * 64, json.dumps(doc).encode())
    assert [b.size for b in image.blobs] == [10, 300] and image.size == 310
    with pytest.raises(ImageError):
        parse_image("team/app", "v1", DIGEST, b"[]")
