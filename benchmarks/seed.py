"""Build the benchmark images and push them to the upstream registry.

The large single-layer image is written in streaming fashion (1 MiB at a time, hashed on the
way) so a 1 GiB layer never sits in memory; the 50-layer image and the multi-arch index come
from the project's own builder, :mod:`mirror.testing.images` via ``ImageFactory``.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mirror.testing.images import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    REF_NAME,
)
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry

MiB = 1024 * 1024
LARGE_REPO = "bench/large"
LAYERS_REPO = "bench/layers"
INDEX_REPO = "bench/multi"
TAG = "v1"


@dataclass(frozen=True)
class Blob:
    """A blob pushed upstream."""

    digest: str
    size: int


@dataclass(frozen=True)
class Seeded:
    """What the upstream holds for the scenarios."""

    large: Blob
    large_manifest: Blob
    layers_manifest: Blob
    layers: tuple[Blob, ...]
    index: Blob
    index_bytes: bytes


def _json(doc: object) -> bytes:
    return json.dumps(doc, indent=2).encode() + b"\n"


def _write_small(blob_dir: Path, data: bytes) -> Blob:
    digest = hashlib.sha256(data).hexdigest()
    (blob_dir / digest).write_bytes(data)
    return Blob(f"sha256:{digest}", len(data))


def write_large_image(layout: Path, content_size: int, rng: random.Random) -> tuple[Blob, Blob]:
    """Write an OCI layout tagged ``TAG`` holding one layer (a tar with one file of
    ``content_size`` random bytes, gzip-framed but stored), streaming; returns (layer, manifest)."""
    blob_dir = layout / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    info = tarfile.TarInfo("large.bin")
    info.size, info.mode, info.mtime = content_size, 0o644, 0
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    body_pad = -content_size % tarfile.BLOCKSIZE
    trailer_len = 2 * tarfile.BLOCKSIZE
    total = len(header) + content_size + body_pad + trailer_len
    trailer = b"\0" * (body_pad + trailer_len + (-total % tarfile.RECORDSIZE))
    # gzip with stored (level 0) deflate blocks: skopeo pushes a compressed layer unchanged
    # (it would compress a plain tar itself, changing the digest), and level 0 costs nothing.
    packer = zlib.compressobj(0, zlib.DEFLATED, 31)
    tar_hash, blob_hash = hashlib.sha256(), hashlib.sha256()
    temp = blob_dir / "large.tmp"
    size = 0
    with temp.open("wb") as out:
        for piece in _pieces(header, content_size, trailer, rng):
            tar_hash.update(piece)
            packed = packer.compress(piece)
            blob_hash.update(packed)
            out.write(packed)
            size += len(packed)
        packed = packer.flush()
        blob_hash.update(packed)
        out.write(packed)
        size += len(packed)
    layer = Blob(f"sha256:{blob_hash.hexdigest()}", size)
    diff_id = f"sha256:{tar_hash.hexdigest()}"
    temp.rename(blob_dir / blob_hash.hexdigest())
    config = _write_small(
        blob_dir,
        _json(
            {
                "created": "1970-01-01T00:00:00Z",
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ),
    )
    manifest = _write_small(
        blob_dir,
        _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
                "layers": [
                    {"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
                ],
            }
        ),
    )
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest.digest,
                "size": manifest.size,
                "annotations": {REF_NAME: TAG},
            }
        ],
    }
    (layout / "index.json").write_bytes(_json(index))
    return layer, manifest


def _pieces(header: bytes, size: int, trailer: bytes, rng: random.Random) -> Iterator[bytes]:
    """The tar's bytes: header, ``size`` random bytes in 1 MiB pieces, padding and trailer."""
    yield header
    left = size
    while left > 0:
        n = min(MiB, left)
        yield rng.randbytes(n)
        left -= n
    yield trailer


def seed(
    upstream: Registry,
    work: Path,
    *,
    large_size: int,
    layer_count: int,
    layer_size: int,
) -> Seeded:
    """Build and push the three images; layouts are deleted after the push."""
    rng = random.Random(6)
    layout = work / "layout-large"
    large, large_manifest = write_large_image(layout, large_size, rng)
    upstream.push(layout, TAG, LARGE_REPO)
    shutil.rmtree(layout)
    factory = ImageFactory(upstream, work / "layout-small", rng, LAYERS_REPO)
    pushed = factory.push(TAG, layers=layer_count, layer_size=layer_size)
    multi = factory.push_index(TAG, repo=INDEX_REPO, layers_per_image=2, layer_size=layer_size)
    shutil.rmtree(work / "layout-small")
    return Seeded(
        large=large,
        large_manifest=large_manifest,
        layers_manifest=Blob(pushed.image.manifest.digest, pushed.image.manifest.size),
        layers=tuple(Blob(b.digest, b.size) for b in pushed.image.blobs()),
        index=Blob(multi.index.index_digest, multi.index.index.size),
        index_bytes=multi.index.index_bytes,
    )
