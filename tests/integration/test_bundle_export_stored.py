"""``mirror export --config`` reads a stopped mirror's cache without starting it: tags resolve
as the mirror resolves them (a tag past its TTL is revalidated through the mirror, started
for that; offline, never), every manifest and blob is still verified (a tampered one is
refused, never exported), and a data directory a server holds is refused as before."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from mirror.bundle.fetched import FetchFailed
from mirror.cli import export as export_cli
from mirror.cli.main import parser
from mirror.db.lock import DataDirLock
from mirror.testing.images import BuiltImage, build_image, random_layer
from mirror.testing.loopback import serve_on_loopback
from tests.integration.test_bundle_export_cache import (
    BUILT,
    REF,
    blob_requests,
    bundle_blobs,
    export,
    image_blobs,
    settled,
    upstream_of,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def image(tmp_path: Path) -> BuiltImage:
    """An image of two random layers in a layout."""
    rng = random.Random(7)
    return build_image(
        tmp_path / "layout", "1.0", [random_layer(rng, 200_000), random_layer(rng, 3_000)]
    )


def with_cache(config: Path, lines: str) -> None:
    """Add a ``[cache]`` table to ``config``."""
    config.write_text(config.read_text() + f"[cache]\n{lines}\n")


async def test_a_tag_past_its_ttl_starts_the_mirror_to_revalidate_it_blobs_still_from_store(
    image: BuiltImage, tmp_path: Path
) -> None:
    upstream_seen: list[str] = []
    _, upstream_app = await upstream_of(image, upstream_seen)
    async with serve_on_loopback(upstream_app) as upstream:
        config = write_config(tmp_path, upstream)
        with_cache(config, "tag_ttl = 0")
        await export(config, tmp_path / "cold.tar", [])
        before = list(upstream_seen)
        seen: list[str] = []
        warm = await export(config, tmp_path / "warm.tar", seen)

    asked = upstream_seen[len(before) :]
    # The tag was asked of the upstream again (through the mirror), no blob was.
    assert seen[0] == BUILT and "/v2/library/app/manifests/1.0" in seen
    assert any(p.endswith("/manifests/1.0") for p in asked) and not blob_requests(asked)
    assert not blob_requests(seen)
    wanted = image_blobs(image)
    assert warm["from_store"] == sum(len(b) for b in wanted.values())
    assert {d: bundle_blobs(tmp_path / "warm.tar")[d] for d in wanted} == wanted


async def test_offline_a_cached_tag_is_exported_with_no_upstream_and_no_mirror_started(
    image: BuiltImage, tmp_path: Path
) -> None:
    _, upstream_app = await upstream_of(image, [])
    async with serve_on_loopback(upstream_app) as upstream:
        config = write_config(tmp_path, upstream)
        await export(config, tmp_path / "cold.tar", [])
    # The upstream is gone; the mirror is configured offline and its tag long past 60 s.
    with_cache(config, "offline = true\ntag_ttl = 0")
    seen: list[str] = []
    manifest = await export(config, tmp_path / "offline.tar", seen)

    assert seen == []
    wanted = image_blobs(image)
    assert manifest["from_store"] == sum(len(b) for b in wanted.values())
    assert {d: bundle_blobs(tmp_path / "offline.tar")[d] for d in wanted} == wanted


async def test_a_tampered_manifest_of_a_plaintext_cache_is_refused_never_exported(
    image: BuiltImage, tmp_path: Path
) -> None:
    _, upstream_app = await upstream_of(image, [])
    async with serve_on_loopback(upstream_app) as upstream:
        config = write_config(tmp_path, upstream)
        text = config.read_text().replace("[encryption]\n", "[encryption]\nenabled = false\n")
        config.write_text(text)
        await export(config, tmp_path / "cold.tar", [])
        await settled(tmp_path / "data")
        digest = image.manifest.digest.split(":")[1]
        stored = [p for p in (tmp_path / "data" / "blobs").rglob(digest)]
        assert len(stored) == 1, stored
        stored[0].write_bytes(stored[0].read_bytes().replace(b"schemaVersion", b"schemaversion"))
        bundle = tmp_path / "again.tar"
        args = parser().parse_args(["export", REF, "-o", str(bundle), "--config", str(config)])
        with pytest.raises(FetchFailed) as refused:
            await export_cli.export(args, io.StringIO(), io.StringIO())

    assert "hashes to" in str(refused.value)
    assert not bundle.exists()


def test_an_export_is_refused_while_a_server_holds_the_data_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    lock = DataDirLock(tmp_path / "data")
    lock.acquire(holder="a running mirror server")
    try:
        args = parser().parse_args(
            ["export", REF, "-o", str(tmp_path / "b.tar"), "--config", str(config)]
        )
        out, err = io.StringIO(), io.StringIO()
        code = export_cli.run(args, out, err)
    finally:
        lock.release()

    assert code == 2
    assert "in use by a running mirror server" in err.getvalue()
    assert out.getvalue() == ""
