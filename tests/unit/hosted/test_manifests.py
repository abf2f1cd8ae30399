"""The pushed-manifest checks: media types, descriptors, references, subject, size."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.manifests import check_manifest
from mirror.hosted.names import hosted_key
from mirror.oci.media import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


def desc(digest: str, media_type: str = "application/octet-stream") -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": 3}


def image(media_type: str = OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": media_type, "config": desc(A, "cfg"),
            "layers": [desc(B)], **extra}  # fmt: skip


def check(doc: Any, content_type: str = OCI_MANIFEST, limit: int = 1 << 20) -> Any:
    return check_manifest(json.dumps(doc).encode(), content_type, limit)


def test_hosted_key() -> None:
    assert hosted_key("acme") == "hosted:acme"


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_an_image_manifest_requires_its_config_and_layers(media_type: str) -> None:
    pushed = check(image(media_type), media_type)
    assert pushed.media_type == media_type
    assert [str(d) for d in pushed.blobs] == [A, B]
    assert pushed.children == () and pushed.subject is None
    assert pushed.references == (A, B)


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_an_index_requires_its_children(media_type: str) -> None:
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": [desc(C, OCI_MANIFEST)]}
    pushed = check(doc, media_type)
    assert [str(d) for d in pushed.children] == [C] and pushed.blobs == ()


def test_an_oci_manifest_without_media_type_takes_the_content_type() -> None:
    doc = image()
    del doc["mediaType"]
    assert check(doc).media_type == OCI_MANIFEST


def test_an_artifact_with_subject_and_empty_config() -> None:
    doc = image(artifactType="application/x.sig", subject=desc(C, OCI_MANIFEST))
    doc["config"] = {**desc(A), "mediaType": "application/vnd.oci.empty.v1+json"}
    pushed = check(doc)
    assert str(pushed.subject) == C and pushed.artifact_type == "application/x.sig"
    # Without artifactType, the config's media type is the artifact type.
    assert check(image(subject=desc(C))).artifact_type == "cfg"


@pytest.mark.parametrize(
    ("doc", "content_type", "reason"),
    [
        (image(), "application/json", "Content-Type"),
        (image(), None, "Content-Type"),
        (image(), OCI_INDEX, "does not match"),
        (image(DOCKER_MANIFEST), OCI_MANIFEST, "does not match"),
        ({**image(), "schemaVersion": 1}, OCI_MANIFEST, "schemaVersion"),
        ({**image(), "config": None}, OCI_MANIFEST, "config"),
        ({**image(), "layers": "x"}, OCI_MANIFEST, "layers"),
        ({**image(), "layers": [{"mediaType": "x", "digest": "nope", "size": 1}]}, OCI_MANIFEST,
         "invalid digest"),
        ({**image(), "layers": [{"mediaType": "x", "digest": A, "size": -1}]}, OCI_MANIFEST,
         "size"),
        ({**image(), "layers": [{"digest": A, "size": 1}]}, OCI_MANIFEST, "mediaType"),
        ({**image(), "subject": "x"}, OCI_MANIFEST, "subject"),
        ({**image(), "annotations": {"a": 1}}, OCI_MANIFEST, "annotations"),
        ({**image(), "artifactType": 3}, OCI_MANIFEST, "artifactType"),
        ({"schemaVersion": 2, "mediaType": OCI_INDEX}, OCI_INDEX, "manifests"),
        ([], OCI_MANIFEST, "object"),
    ],
)  # fmt: skip
def test_invalid_manifests(doc: Any, content_type: str | None, reason: str) -> None:
    with pytest.raises(RegistryError) as caught:
        check(doc, content_type)  # type: ignore[arg-type]
    assert caught.value.code is ErrorCode.MANIFEST_INVALID
    assert reason in caught.value.detail["reason"]


@pytest.mark.parametrize("body", [b"{", b"\xff", b"[" * 100_000 + b"]" * 100_000])
def test_bodies_that_are_not_json(body: bytes) -> None:
    with pytest.raises(RegistryError) as caught:
        check_manifest(body, OCI_MANIFEST, 1 << 30)
    assert caught.value.code is ErrorCode.MANIFEST_INVALID


def test_the_size_limit() -> None:
    body = json.dumps(image()).encode()
    check_manifest(body, OCI_MANIFEST, len(body))
    with pytest.raises(RegistryError) as caught:
        check_manifest(body, OCI_MANIFEST, len(body) - 1)
    assert caught.value.code is ErrorCode.SIZE_INVALID and caught.value.status == 413


NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


@pytest.mark.parametrize(("media_type", "layer_type"), [(OCI_MANIFEST, NONDIST),
                                                        (DOCKER_MANIFEST, FOREIGN)])  # fmt: skip
def test_a_non_distributable_layer_with_urls_need_not_be_held(
    media_type: str, layer_type: str
) -> None:
    foreign = {**desc(C, layer_type), "urls": ["https://store.example.com/blobs/" + C]}
    pushed = check(image(media_type, layers=[foreign, desc(B)]), media_type)
    assert [str(d) for d in pushed.blobs] == [A, B]
    assert pushed.references == (A, B)


def test_a_non_distributable_layer_without_urls_must_be_held() -> None:
    pushed = check(image(layers=[desc(C, NONDIST)]))
    assert [str(d) for d in pushed.blobs] == [A, C]


def test_a_non_distributable_layer_with_a_non_http_url_is_invalid() -> None:
    foreign = {**desc(C, NONDIST), "urls": ["file:///etc/passwd"]}
    with pytest.raises(RegistryError) as raised:
        check(image(layers=[foreign]))
    assert raised.value.code is ErrorCode.MANIFEST_INVALID
