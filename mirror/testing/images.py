"""Build OCI images into image layouts (written through :mod:`mirror.oci.layout`).

Everything is deterministic for given inputs (tar and gzip timestamps are zero), so the same
layers always give the same digests; randomness comes only from the ``random.Random`` a caller
passes in. Sizes are meant for tests: every layer is held in memory.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from mirror.oci.digest import Digest
from mirror.oci.layout import LAYOUT_VERSION, Descriptor, ImageLayout
from mirror.oci.layout import REF_NAME as REF_NAME  # re-exported for the tests and benchmarks

OCI_LAYOUT_VERSION = LAYOUT_VERSION
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

Platform = tuple[str, str]
"""``(os, architecture)``, e.g. ``("linux", "amd64")``."""


@dataclass(frozen=True, slots=True)
class BlobFile:
    """One blob written into a layout: its descriptor fields and where its bytes are."""

    digest: str
    size: int
    media_type: str
    path: Path

    def read_bytes(self) -> bytes:
        """The blob's bytes as stored in the layout."""
        return self.path.read_bytes()

    def descriptor(self) -> dict[str, object]:
        """The OCI descriptor for this blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True)
class BuiltLayer(BlobFile):
    """A layer blob plus ``diff_id``, the digest of its uncompressed tar."""

    diff_id: str = ""


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """A single-platform image written into ``layout_dir`` (tagged ``tag`` unless it is only
    a child of an index, where ``tag`` is empty)."""

    layout_dir: Path
    tag: str
    platform: Platform
    manifest: BlobFile
    manifest_bytes: bytes
    config: BlobFile
    layers: tuple[BuiltLayer, ...]

    @property
    def manifest_digest(self) -> str:
        """Digest of the image manifest, as pushed unchanged in OCI format."""
        return self.manifest.digest

    @property
    def config_digest(self) -> str:
        """Digest of the image config blob."""
        return self.config.digest

    def blobs(self) -> tuple[BlobFile, ...]:
        """The config and the layers: every blob the manifest references."""
        return (self.config, *self.layers)


@dataclass(frozen=True, slots=True)
class BuiltIndex:
    """A multi-platform image index written into ``layout_dir`` and tagged ``tag``."""

    layout_dir: Path
    tag: str
    index: BlobFile
    index_bytes: bytes
    images: tuple[BuiltImage, ...]

    @property
    def index_digest(self) -> str:
        """Digest of the image index, as pushed unchanged with ``skopeo copy --all``."""
        return self.index.digest

    def image_for(self, platform: Platform) -> BuiltImage:
        """The child image for ``platform``; raises ``KeyError`` if there is none."""
        for image in self.images:
            if image.platform == platform:
                return image
        raise KeyError(platform)


def random_layer(rng: random.Random, size: int, marker: bytes | None = None) -> bytes:
    """``size`` incompressible bytes from ``rng``, with ``marker`` planted at a random offset
    so a test can recognise the content later (e.g. by searching unpacked files)."""
    data = bytearray(rng.randbytes(size))
    if marker:
        if len(marker) > size:
            raise ValueError(f"marker of {len(marker)} bytes does not fit in {size} bytes")
        offset = rng.randrange(size - len(marker) + 1)
        data[offset : offset + len(marker)] = marker
    return bytes(data)


def build_image(
    layout_dir: Path,
    tag: str,
    layers: list[bytes],
    *,
    gzip_layers: bool = True,
    platform: Platform = ("linux", "amd64"),
) -> BuiltImage:
    """Write an image whose layer ``i`` is a tar holding one file ``layer-i.bin`` with
    ``layers[i]`` as content, and tag it ``tag`` in the layout's ``index.json``."""
    image = _write_image(layout_dir, layers, gzip_layers=gzip_layers, platform=platform)
    _tag(layout_dir, tag, image.manifest)
    return replace(image, tag=tag)


def build_index(
    layout_dir: Path,
    tag: str,
    platforms: list[Platform],
    layers_per_image: int = 2,
    *,
    rng: random.Random,
    layer_size: int = 4096,
    gzip_layers: bool = True,
) -> BuiltIndex:
    """Write one image per platform (each with its own random layers) and an image index
    referencing them, tagged ``tag``. The child manifests are not tagged."""
    images = tuple(
        _write_image(
            layout_dir,
            [random_layer(rng, layer_size) for _ in range(layers_per_image)],
            gzip_layers=gzip_layers,
            platform=platform,
        )
        for platform in platforms
    )
    index_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {**image.manifest.descriptor(), "platform": _platform_doc(image.platform)}
            for image in images
        ],
    }
    index_bytes = _json_bytes(index_doc)
    index = _write_blob(layout_dir, index_bytes, OCI_INDEX)
    _tag(layout_dir, tag, index)
    return BuiltIndex(layout_dir, tag, index, index_bytes, images)


def layer_tar(name: str, content: bytes) -> bytes:
    """An uncompressed tar holding one regular file ``name`` (mode 0644, owner 0:0, mtime 0)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _write_image(
    layout_dir: Path, contents: list[bytes], *, gzip_layers: bool, platform: Platform
) -> BuiltImage:
    """Write layers, config and manifest blobs of one image; leave ``index.json`` alone."""
    ImageLayout.create(layout_dir)
    layers = tuple(
        _write_layer(layout_dir, f"layer-{i}.bin", content, gzip_layers=gzip_layers)
        for i, content in enumerate(contents)
    )
    os_name, architecture = platform
    config_doc = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": architecture,
        "os": os_name,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": f"mirror.testing layer {i}"} for i in range(len(layers))],
    }
    config = _write_blob(layout_dir, _json_bytes(config_doc), OCI_CONFIG)
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest_bytes = _json_bytes(manifest_doc)
    manifest = _write_blob(layout_dir, manifest_bytes, OCI_MANIFEST)
    return BuiltImage(layout_dir, "", platform, manifest, manifest_bytes, config, layers)


def _write_layer(layout_dir: Path, name: str, content: bytes, *, gzip_layers: bool) -> BuiltLayer:
    tar = layer_tar(name, content)
    diff_id = _digest(tar)
    if gzip_layers:
        blob = _write_blob(layout_dir, gzip.compress(tar, compresslevel=1, mtime=0), OCI_LAYER_GZIP)
    else:
        blob = _write_blob(layout_dir, tar, OCI_LAYER_TAR)
    return BuiltLayer(blob.digest, blob.size, blob.media_type, blob.path, diff_id)


def _tag(layout_dir: Path, tag: str, target: BlobFile) -> None:
    """Point ``tag`` at ``target`` in ``index.json``, replacing an earlier entry of that tag."""
    descriptor = Descriptor(target.media_type, Digest.parse(target.digest), target.size)
    ImageLayout.create(layout_dir).tag(tag, descriptor)


def _write_blob(layout_dir: Path, data: bytes, media_type: str) -> BlobFile:
    layout = ImageLayout.create(layout_dir)
    digest = layout.write_blob(data)
    return BlobFile(str(digest), len(data), media_type, layout.blob_path(digest))


def _platform_doc(platform: Platform) -> dict[str, str]:
    os_name, architecture = platform
    return {"architecture": architecture, "os": os_name}


def _digest(data: bytes) -> str:
    return str(Digest.of(data))


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, indent=2).encode() + b"\n"
