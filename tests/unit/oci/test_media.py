"""Manifest media types, the references a manifest makes, and ``Accept`` negotiation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.oci.media import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestInfo,
    acceptable,
    default_platform_child,
    parse_accept,
    parse_manifest,
)

CONFIG = str(Digest.of(b"config"))
LAYER_1 = str(Digest.of(b"layer 1"))
LAYER_2 = str(Digest.of(b"layer 2"))
AMD64 = str(Digest.of(b"linux/amd64"))
ARM64 = str(Digest.of(b"linux/arm64"))
ARM_V7 = str(Digest.of(b"linux/arm/v7"))


def descriptor(media_type: str, digest: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": 100, **extra}


def image_manifest(media_type: str) -> bytes:
    layer_type = "application/vnd.oci.image.layer.v1.tar+gzip"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor("application/vnd.oci.image.config.v1+json", CONFIG),
            "layers": [descriptor(layer_type, LAYER_1), descriptor(layer_type, LAYER_2)],
        }
    ).encode()


def index(media_type: str | None, *children: dict[str, Any]) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "manifests": list(children)}
    if media_type is not None:
        doc["mediaType"] = media_type
    return json.dumps(doc).encode()


def child(digest: str, os: str, architecture: str, variant: str | None = None) -> dict[str, Any]:
    platform = {"os": os, "architecture": architecture}
    if variant is not None:
        platform["variant"] = variant
    return descriptor(OCI_MANIFEST, digest, platform=platform)


# parse_manifest -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "media_type",
    [
        pytest.param(OCI_MANIFEST, id="oci-manifest"),
        pytest.param(DOCKER_MANIFEST, id="docker-schema2"),
    ],
)
def test_image_manifest_references_config_then_layers(media_type: str) -> None:
    info = parse_manifest(image_manifest(media_type), "application/octet-stream")

    assert info == ManifestInfo(media_type, (CONFIG, LAYER_1, LAYER_2), ())


@pytest.mark.parametrize(
    "media_type",
    [
        pytest.param(OCI_INDEX, id="oci-index"),
        pytest.param(DOCKER_MANIFEST_LIST, id="docker-manifest-list"),
    ],
)
def test_index_lists_children_with_their_platform(media_type: str) -> None:
    body = index(
        media_type,
        child(AMD64, "linux", "amd64"),
        child(ARM_V7, "linux", "arm", "v7"),
        descriptor(OCI_MANIFEST, ARM64),  # no platform
    )

    info = parse_manifest(body, None)

    assert info.media_type == media_type
    assert info.references == (AMD64, ARM_V7, ARM64)
    assert info.children == (
        (AMD64, "linux", "amd64", ""),
        (ARM_V7, "linux", "arm", "v7"),
        (ARM64, "", "", ""),
    )


def test_artifact_blobs_are_references() -> None:
    body = json.dumps(
        {"mediaType": OCI_MANIFEST, "blobs": [descriptor("application/octet-stream", LAYER_1)]}
    ).encode()

    assert parse_manifest(body, None).references == (LAYER_1,)


@pytest.mark.parametrize(
    "body, content_type, media_type",
    [
        pytest.param(
            b'{"schemaVersion": 2, "layers": []}',
            f"{DOCKER_MANIFEST}; charset=utf-8",
            DOCKER_MANIFEST,
            id="from-content-type-without-parameters",
        ),
        pytest.param(b'{"schemaVersion": 2, "manifests": []}', None, OCI_INDEX, id="guessed-index"),
        pytest.param(b'{"schemaVersion": 2, "layers": []}', None, OCI_MANIFEST, id="guessed"),
        pytest.param(
            b'{"mediaType": "%s"}' % OCI_INDEX.encode(),
            DOCKER_MANIFEST,
            OCI_INDEX,
            id="body-beats-content-type",
        ),
    ],
)
def test_media_type_when_the_body_does_not_say(
    body: bytes, content_type: str | None, media_type: str
) -> None:
    assert parse_manifest(body, content_type).media_type == media_type


def test_malformed_descriptors_are_skipped() -> None:
    body = json.dumps(
        {
            "mediaType": OCI_MANIFEST,
            "config": {"digest": 42},
            "layers": ["not a descriptor", {"size": 3}, descriptor("x", LAYER_1)],
        }
    ).encode()

    assert parse_manifest(body, None).references == (LAYER_1,)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"mediaType": ', id="truncated"),
        pytest.param(b"\xff\xfe\xfd", id="not-utf8"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"manifest"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-array"),
        pytest.param(
            b'{"annotations": ' + b'{"a": ' * 100_000 + b"}" * 100_001, id="nested-object"
        ),
    ],
)
def test_not_a_json_object_is_manifest_invalid(body: bytes) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_manifest(body, OCI_MANIFEST)

    assert caught.value.code is ErrorCode.MANIFEST_INVALID
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"layers": 5}, id="layers-a-number"),
        pytest.param({"blobs": {"digest": LAYER_1}}, id="blobs-an-object"),
        pytest.param({"manifests": True}, id="manifests-a-bool"),
    ],
)
def test_descriptor_list_that_is_not_a_list_is_manifest_invalid(doc: dict[str, Any]) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_manifest(json.dumps(doc).encode(), OCI_INDEX)

    assert caught.value.code is ErrorCode.MANIFEST_INVALID


def test_platform_that_is_not_an_object_counts_as_no_platform() -> None:
    body = index(OCI_INDEX, descriptor(OCI_MANIFEST, AMD64, platform="linux/amd64"))

    assert parse_manifest(body, None).children == ((AMD64, "", "", ""),)


# Accept ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, expected",
    [
        pytest.param([], [], id="none"),
        pytest.param([OCI_MANIFEST], [OCI_MANIFEST], id="one"),
        pytest.param([f"{OCI_INDEX}, {OCI_MANIFEST}"], [OCI_INDEX, OCI_MANIFEST], id="comma-list"),
        pytest.param(
            [DOCKER_MANIFEST, f"{OCI_MANIFEST},{OCI_INDEX}"],
            [DOCKER_MANIFEST, OCI_MANIFEST, OCI_INDEX],
            id="several-headers",
        ),
        pytest.param(
            [f"{OCI_INDEX};q=0.9, {DOCKER_MANIFEST} ; q=0.5, */*;q=0.1"],
            [OCI_INDEX, DOCKER_MANIFEST, "*/*"],
            id="q-values-dropped",
        ),
        pytest.param(
            ["Application/VND.OCI.Image.Manifest.v1+JSON"], [OCI_MANIFEST], id="lowercased"
        ),
        pytest.param([" , ,", ""], [], id="empty-items"),
    ],
)
def test_parse_accept(headers: list[str], expected: list[str]) -> None:
    assert parse_accept(headers) == expected


@pytest.mark.parametrize(
    "media_type, accept, expected",
    [
        pytest.param(OCI_INDEX, [], True, id="no-accept-takes-anything"),
        pytest.param(OCI_INDEX, [OCI_INDEX, OCI_MANIFEST], True, id="listed"),
        pytest.param(OCI_INDEX, [DOCKER_MANIFEST, OCI_MANIFEST], False, id="not-listed"),
        pytest.param(DOCKER_MANIFEST_LIST, [OCI_INDEX], False, id="docker-list-is-not-oci-index"),
        pytest.param(OCI_INDEX, [DOCKER_MANIFEST, "*/*"], True, id="any"),
        pytest.param(OCI_INDEX, ["application/*"], True, id="any-application"),
        pytest.param(OCI_INDEX, ["text/*"], False, id="other-wildcard"),
    ],
)
def test_acceptable(media_type: str, accept: list[str], expected: bool) -> None:
    assert acceptable(media_type, accept) is expected


def test_containerds_accept_takes_every_manifest_type() -> None:
    accept = parse_accept(
        [
            f"{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}, {OCI_MANIFEST}, {OCI_INDEX}, */*",
        ]
    )

    for media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST):
        assert acceptable(media_type, accept)


# default_platform_child -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "children, expected",
    [
        pytest.param(
            [child(ARM64, "linux", "arm64"), child(AMD64, "linux", "amd64")],
            AMD64,
            id="linux-amd64-even-when-not-first",
        ),
        pytest.param(
            [child(ARM64, "windows", "amd64"), child(AMD64, "linux", "amd64")],
            AMD64,
            id="linux-not-windows",
        ),
        pytest.param(
            [child(ARM_V7, "linux", "arm", "v7"), child(ARM64, "linux", "arm64")],
            ARM_V7,
            id="first-without-linux-amd64",
        ),
        pytest.param([], None, id="empty-index"),
    ],
)
def test_default_platform_child(children: list[dict[str, Any]], expected: str | None) -> None:
    info = parse_manifest(index(OCI_INDEX, *children), None)

    assert default_platform_child(info) == expected


def test_image_manifest_has_no_default_platform_child() -> None:
    assert default_platform_child(parse_manifest(image_manifest(OCI_MANIFEST), None)) is None
