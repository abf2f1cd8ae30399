"""OCI image layout (image-spec "image-layout.md"): marker, index.json and content-addressed
blobs, read back exactly as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirror.oci.digest import Digest
from mirror.oci.layout import (
    REF_NAME,
    Descriptor,
    ImageLayout,
    LayoutError,
)

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def test_create_writes_the_marker_an_empty_index_and_the_blob_folder(tmp_path: Path) -> None:
    ImageLayout.create(tmp_path)
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads((tmp_path / "index.json").read_text()) == {
        "schemaVersion": 2,
        "manifests": [],
    }
    assert (tmp_path / "blobs" / "sha256").is_dir()
    assert ImageLayout.open(tmp_path).manifests() == []


def test_create_keeps_what_an_existing_layout_holds(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path)
    digest = layout.write_blob(b"{}")
    layout.tag("v1", Descriptor(MANIFEST, digest, 2))
    again = ImageLayout.create(tmp_path)
    assert again.resolve("v1").digest == digest and again.has_blob(digest)


def test_a_blob_lives_at_its_digest_and_reads_back(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path)
    digest = layout.write_blob(b"layer bytes")
    assert digest == Digest.of(b"layer bytes")
    assert layout.blob_path(digest) == tmp_path / "blobs" / "sha256" / digest.encoded
    assert layout.read_blob(digest) == b"layer bytes"
    assert layout.write_blob(b"layer bytes") == digest  # idempotent
    assert [p.name for p in (tmp_path / "blobs" / "sha256").iterdir()] == [digest.encoded]


def test_reading_a_missing_or_altered_blob_fails_naming_the_file(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path)
    missing = Digest.of(b"never written")
    with pytest.raises(LayoutError, match="blob missing"):
        layout.read_blob(missing)
    digest = layout.write_blob(b"original")
    layout.blob_path(digest).write_bytes(b"tampered")
    with pytest.raises(LayoutError, match=f"content has digest {Digest.of(b'tampered')}") as err:
        layout.read_blob(digest)
    assert err.value.path == layout.blob_path(digest)


def test_a_tag_is_the_ref_name_annotation_and_a_retag_replaces_only_it(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path)
    one, two = layout.write_blob(b'{"a":1}'), layout.write_blob(b'{"b":2}')
    layout.tag("v1", Descriptor(MANIFEST, one, 7))
    layout.tag("latest", Descriptor(MANIFEST, one, 7))
    layout.tag("v1", Descriptor(MANIFEST, two, 7, platform={"os": "linux"}))

    assert [(d.ref_name, d.digest) for d in layout.manifests()] == [("latest", one), ("v1", two)]
    entry = json.loads((tmp_path / "index.json").read_text())["manifests"][1]
    assert entry == {
        "mediaType": MANIFEST,
        "digest": str(two),
        "size": 7,
        "platform": {"os": "linux"},
        "annotations": {REF_NAME: "v1"},
    }
    with pytest.raises(KeyError):
        layout.resolve("v2")


def test_descriptor_json_round_trips_and_rejects_what_is_not_one() -> None:
    digest = Digest.of(b"x")
    descriptor = Descriptor(MANIFEST, digest, 1, {"k": "v"})
    assert Descriptor.from_json(descriptor.to_json()) == descriptor
    bad: object
    for bad in (
        [],
        {"mediaType": MANIFEST, "digest": str(digest)},
        {"mediaType": MANIFEST, "digest": str(digest), "size": -1},
        {"mediaType": MANIFEST, "digest": "sha256:short", "size": 1},
    ):
        with pytest.raises(ValueError):
            Descriptor.from_json(bad)


@pytest.mark.parametrize(
    ("marker", "reason"),
    [
        (None, "not an OCI image layout marker"),
        (b"not json", "not an OCI image layout marker"),
        (b'{"imageLayoutVersion": "2.0.0"}', "unknown imageLayoutVersion '2.0.0'"),
    ],
    ids=["missing", "garbage", "future-version"],
)
def test_open_refuses_a_directory_that_is_not_a_layout(
    tmp_path: Path, marker: bytes | None, reason: str
) -> None:
    if marker is not None:
        (tmp_path / "oci-layout").write_bytes(marker)
    with pytest.raises(LayoutError) as err:
        ImageLayout.open(tmp_path)
    assert err.value.reason == reason


def test_a_malformed_index_is_a_layout_error(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path)
    (tmp_path / "index.json").write_text('{"manifests": [{"digest": "nope"}]}')
    with pytest.raises(LayoutError):
        layout.manifests()
    (tmp_path / "index.json").write_text("[]")
    with pytest.raises(LayoutError, match="not an image index"):
        layout.manifests()


def test_write_index_replaces_the_entries_and_entries_reads_them_back(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": "sha256:" + "a" * 64, "size": 3,
             "annotations": {REF_NAME: "x:1"}}  # fmt: skip
    layout.write_index([entry])
    assert layout.entries() == [entry]
    assert [d.ref_name for d in layout.manifests()] == ["x:1"]
