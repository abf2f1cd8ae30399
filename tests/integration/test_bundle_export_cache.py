"""``mirror export`` without ``--mirror`` reads what the configured cache holds straight from
its stores (the blob store's verified reader, manifests through the metadata) and serves the
configured mirror in-process only for the rest: a warm export starts no mirror and makes no
request at all, a cold one takes each missing blob through the pull-through path once, and a
cached copy that fails its check is never exported: it is refetched through the mirror
instead."""

from __future__ import annotations

import asyncio
import io
import json
import random
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mirror.app.build import build_app
from mirror.cli import export as export_cli
from mirror.cli.main import parser
from mirror.config import Config
from mirror.errors import DigestMismatch
from mirror.oci.digest import Digest
from mirror.testing.images import BuiltImage, build_image, random_layer
from mirror.testing.loopback import serve_on_loopback
from mirror.testing.registry import InProcessRegistry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REF = "docker.io/library/app:1.0"
# Noted when the export starts the in-process mirror.
BUILT = "(mirror built)"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def counting(paths: list[str]) -> Any:
    """A middleware noting the path of every request the app answers."""

    @web.middleware
    async def note(request: web.Request, handler: Handler) -> web.StreamResponse:
        paths.append(request.path)
        return await handler(request)

    return note


def blob_requests(paths: list[str]) -> list[str]:
    """The requests for blobs among ``paths``."""
    return [p for p in paths if "/blobs/" in p]


def write_config(tmp_path: Path, upstream: str) -> Path:
    """A mirror of docker.io at ``upstream``, its data and key under ``tmp_path``."""
    config = tmp_path / "mirror.toml"
    config.write_text(
        'default_upstream = "docker.io"\n'
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\nchunk_size = 65536\n'
        f'[encryption]\nkek_file = "{tmp_path / "data.kek"}"\n'
        f'[[upstreams]]\nhost = "docker.io"\nurl = "{upstream}"\n'
    )
    return config


async def export(config: Path, bundle: Path, seen: list[str]) -> dict[str, Any]:
    """``mirror export REF -o BUNDLE --config CONFIG`` with the in-process mirror's requests
    noted in ``seen`` (after ``BUILT`` when it had to be started); the printed manifest."""

    def build(parsed: Config) -> web.Application:
        seen.append(BUILT)
        app = build_app(parsed)
        app.middlewares.append(counting(seen))
        return app

    out, err = io.StringIO(), io.StringIO()
    args = parser().parse_args(["export", REF, "-o", str(bundle), "--config", str(config)])
    code = await export_cli.export(args, out, err, build)
    assert code == 0, err.getvalue()
    manifest: dict[str, Any] = json.loads(out.getvalue())
    return manifest


async def settled(data_dir: Path) -> None:
    """Wait until every fill is durable (its journal entry gone), so a byte changed on disk
    afterwards is not re-verified away by the next start's recovery, but found by the reader."""
    pending = data_dir / "pending"
    for _ in range(200):
        if not pending.exists() or not any(pending.iterdir()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fills still not durable: {list(pending.iterdir())}")


def bundle_blobs(bundle: Path) -> dict[str, bytes]:
    """The blob members of a bundle tar by digest."""
    with tarfile.open(bundle) as archive:
        return {
            m.name.removeprefix("blobs/").replace("/", ":"): archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.name.startswith("blobs/")
        }


def image_blobs(image: BuiltImage) -> dict[str, bytes]:
    """The image's config and layers by digest."""
    return {b.digest: b.read_bytes() for b in image.blobs()}


@pytest.fixture
def image(tmp_path: Path) -> BuiltImage:
    """An image of three random layers (one of 300 kB: several sealed chunks) in a layout."""
    rng = random.Random(12)
    layers = [random_layer(rng, 300_000), random_layer(rng, 5_000), random_layer(rng, 10_000)]
    return build_image(tmp_path / "layout", "1.0", layers)


async def upstream_of(
    image: BuiltImage, seen: list[str]
) -> tuple[InProcessRegistry, web.Application]:
    """A registry holding ``image`` as ``library/app:1.0`` that notes its requests."""
    registry = InProcessRegistry()
    registry.content.add_image("library/app", image)
    app = registry.app()
    app.middlewares.append(counting(seen))
    return registry, app


async def test_a_warm_export_reads_every_blob_from_the_store_and_none_over_http(
    image: BuiltImage, tmp_path: Path
) -> None:
    upstream_seen: list[str] = []
    _, upstream_app = await upstream_of(image, upstream_seen)
    async with serve_on_loopback(upstream_app) as upstream:
        config = write_config(tmp_path, upstream)
        cold_seen: list[str] = []
        cold = await export(config, tmp_path / "cold.tar", cold_seen)
        upstream_cold = blob_requests(upstream_seen)
        warm_seen: list[str] = []
        warm = await export(config, tmp_path / "warm.tar", warm_seen)

    wanted = image_blobs(image)
    # Cold: every blob was a miss, taken through the pull-through path (and the upstream) once.
    assert sorted(blob_requests(cold_seen)) == sorted(f"/v2/library/app/blobs/{d}" for d in wanted)
    assert len(upstream_cold) == len(wanted)
    assert cold["from_store"] == 0
    # Warm: no mirror started, so no request at all; nothing more asked of the upstream.
    assert cold_seen[0] == BUILT
    assert warm_seen == []
    assert blob_requests(upstream_seen) == upstream_cold
    assert warm["from_store"] == sum(len(b) for b in wanted.values())
    for bundle in ("cold.tar", "warm.tar"):
        blobs = bundle_blobs(tmp_path / bundle)
        assert {d: blobs[d] for d in wanted} == wanted
        assert all(Digest.of(body) == Digest.parse(d) for d, body in blobs.items())


async def test_a_cached_blob_that_fails_its_check_is_refetched_not_exported(
    image: BuiltImage, tmp_path: Path
) -> None:
    upstream_seen: list[str] = []
    _, upstream_app = await upstream_of(image, upstream_seen)
    big = max(image.blobs(), key=lambda b: len(b.read_bytes()))
    async with serve_on_loopback(upstream_app) as upstream:
        config = write_config(tmp_path, upstream)
        await export(config, tmp_path / "cold.tar", [])
        await settled(tmp_path / "data")
        blobs = (tmp_path / "data" / "blobs").rglob("*")
        stored = [p for p in blobs if big.digest.split(":")[1] in p.name]
        assert len(stored) == 1, stored
        sealed = bytearray(stored[0].read_bytes())
        sealed[len(sealed) // 3] ^= 0xFF  # one byte of the first sealed chunk's ciphertext
        stored[0].write_bytes(bytes(sealed))
        seen: list[str] = []
        again = await export(config, tmp_path / "again.tar", seen)

    assert blob_requests(seen) == [f"/v2/library/app/blobs/{big.digest}"]
    assert bundle_blobs(tmp_path / "again.tar")[big.digest] == big.read_bytes()
    assert again["from_store"] == sum(len(b.read_bytes()) for b in image.blobs()) - len(
        big.read_bytes()
    )


async def test_a_plaintext_store_blob_is_hashed_so_a_flipped_byte_is_never_exported(
    image: BuiltImage, tmp_path: Path
) -> None:
    # Only the encrypted store's chunks carry a tag; a plaintext file is hashed as it is
    # written to the bundle, and one that no longer matches fails the export, kept nowhere.
    upstream_seen: list[str] = []
    _, upstream_app = await upstream_of(image, upstream_seen)
    big = max(image.blobs(), key=lambda b: len(b.read_bytes()))
    async with serve_on_loopback(upstream_app) as upstream:
        config = write_config(tmp_path, upstream)
        text = config.read_text().replace("[encryption]\n", "[encryption]\nenabled = false\n")
        config.write_text(text)
        await export(config, tmp_path / "cold.tar", [])
        await settled(tmp_path / "data")
        blobs = (tmp_path / "data" / "blobs").rglob("*")
        stored = [p for p in blobs if big.digest.split(":")[1] in p.name]
        assert len(stored) == 1, stored
        plain = bytearray(stored[0].read_bytes())
        assert plain == big.read_bytes()  # plaintext on disk: nothing authenticates it
        plain[len(plain) // 2] ^= 0xFF
        stored[0].write_bytes(bytes(plain))
        bundle = tmp_path / "again.tar"
        args = parser().parse_args(["export", REF, "-o", str(bundle), "--config", str(config)])
        with pytest.raises(DigestMismatch) as refused:
            await export_cli.export(args, io.StringIO(), io.StringIO(), build_app)

    assert big.digest in str(refused.value)
    assert not bundle.exists()
    assert big.digest not in bundle_blobs_of_part(tmp_path / "again.tar.part")


def bundle_blobs_of_part(part: Path) -> dict[str, bytes]:
    """The whole blob members of an unfinished bundle (``.part``) by digest."""
    with part.open("rb") as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
        return {
            m.name.removeprefix("blobs/").replace("/", ":"): archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.name.startswith("blobs/")
        }
