"""Retention end to end: images pulled with skopeo through the mirror from a real upstream,
time moved forward, retention run, and exactly the expected objects gone from disk."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mirror.oci.digest import Digest
from mirror.testing.images import random_layer
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry

from .conftest import Mirror, MirrorFactory
from .retention_helpers import DAY, assert_pulled, on_disk, push_image, skopeo_pull

pytestmark = pytest.mark.integration


@pytest.fixture
async def mirror(mirror_factory: MirrorFactory, upstream_registry: Registry) -> Mirror:
    """A mirror with a "stale" policy (not pulled for 30 days, no cooling) on two repositories
    of the test, everything else under the global policy."""
    return await mirror_factory(
        {upstream_registry.host: upstream_registry.url},
        retention={
            "cooling_period": 0,
            "interval": 0,
            "policies": [
                {
                    "name": "stale",
                    "not_pulled_days": 30,
                    "exempt_tags": ["v*-keep"],
                    "repositories": ["test/ret-old", "test/ret-multi"],
                }
            ],
        },
    )


async def test_stale_images_go_and_shared_blobs_of_kept_images_stay(
    mirror: Mirror,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    rng: random.Random,
    tmp_path: Path,
) -> None:
    shared = random_layer(rng, 50_000)
    kept = push_image(
        upstream_registry, tmp_path, "test/ret-keep", "v1", [shared, random_layer(rng, 40_000)]
    )
    old = push_image(
        upstream_registry, tmp_path, "test/ret-old", "v1", [shared, random_layer(rng, 40_000)]
    )
    exempt = push_image(
        upstream_registry, tmp_path, "test/ret-old", "v2-keep", [random_layer(rng, 3_000)]
    )
    multi = image_factory.push_index("multi", repo="test/ret-multi")
    await skopeo_pull(mirror, "test/ret-keep:v1", tmp_path / "keep")
    await skopeo_pull(mirror, "test/ret-old:v1", tmp_path / "old")
    await skopeo_pull(mirror, "test/ret-old:v2-keep", tmp_path / "exempt")
    await skopeo_pull(mirror, "test/ret-multi:multi", tmp_path / "multi", "--all")
    before = on_disk(mirror)
    multi_objects = {multi.index.index_digest} | {
        d for i in multi.index.images for d in (i.manifest_digest, *(b.digest for b in i.blobs()))
    }
    assert multi_objects <= before

    mirror.clock.advance(31 * DAY)
    dry = await mirror.retention.run(dry_run=True)
    assert on_disk(mirror) == before, "a dry run deleted something"
    by_digest = {line["digest"]: line for line in dry.lines()}
    assert (by_digest[old.manifest_digest]["action"], by_digest[old.manifest_digest]["rule"]) == (
        "delete",
        "not-pulled",
    )
    assert by_digest[kept.manifest_digest]["rule"] == "retains-all"
    assert by_digest[exempt.manifest_digest]["rule"] == "exempt-tag"
    assert by_digest[multi.index.index_digest]["action"] == "delete"

    report = await mirror.retention.run(dry_run=False)

    gone = {old.manifest_digest, old.config_digest, old.layers[1].digest} | multi_objects
    assert before - on_disk(mirror) == gone
    assert shared and kept.layers[0].digest == old.layers[0].digest
    assert {kept.manifest_digest, *(b.digest for b in kept.blobs())} <= on_disk(mirror)
    assert report.outcome.bytes_freed == sum(s for _, _, s in report.outcome.deleted)
    assert mirror.metric("mirror_retention_bytes_freed_total", trigger="manual") == (
        report.outcome.bytes_freed
    )
    assert mirror.metric("mirror_retention_evictions_total", trigger="manual", rule="not-pulled")
    metadata = mirror.services.metadata
    assert metadata.tag(upstream_registry.host, "test/ret-old", "v1") is None
    assert metadata.tag(upstream_registry.host, "test/ret-old", "v2-keep") is not None
    assert metadata.manifest(Digest.parse(old.manifest_digest)) is None
    assert (upstream_registry.host, "test/ret-multi") not in set(metadata.repositories())

    audit = [
        json.loads(line)
        for line in (mirror.data_dir / "retention" / "audit.jsonl").read_text().splitlines()
    ]
    evicted = [e for e in audit if e["event"] == "evict-image"]
    assert {e["digest"] for e in evicted} == {
        old.manifest_digest,
        multi.index.index_digest,
        *(i.manifest_digest for i in multi.index.images),
    }
    assert all(e["policy"] == "stale" and e["rule"] == "not-pulled" for e in evicted)
    assert all("last pulled 31.0 days ago" in e["reason"] for e in evicted)
    assert {e["digest"] for e in audit if e["event"] == "delete-blob"} == gone - {
        old.manifest_digest,
        multi.index.index_digest,
        *(i.manifest_digest for i in multi.index.images),
    }

    # An evicted image is simply fetched again on its next pull.
    await skopeo_pull(mirror, "test/ret-old:v1", tmp_path / "again")
    assert_pulled(tmp_path / "again", old)
    assert upstream_registry.count_requests("GET", old.layers[1].digest) == 2
    assert upstream_registry.count_requests("GET", shared_digest(old)) == 1


def shared_digest(image: object) -> str:
    return image.layers[0].digest  # type: ignore[attr-defined, no-any-return]


async def test_a_pull_of_one_platform_keeps_the_whole_index(
    mirror: Mirror, image_factory: ImageFactory, tmp_path: Path
) -> None:
    multi = image_factory.push_index("multi", repo="test/ret-multi")
    await skopeo_pull(mirror, "test/ret-multi:multi", tmp_path / "all", "--all")
    mirror.clock.advance(31 * DAY)
    # Pulled again through its index: the client gets the amd64 child only.
    await skopeo_pull(mirror, "test/ret-multi:multi", tmp_path / "one")
    before = on_disk(mirror)

    report = await mirror.retention.run(dry_run=False)

    assert report.outcome.evicted == []
    assert on_disk(mirror) == before
    rules = {line["digest"]: line["rule"] for line in report.lines()}
    arm = multi.index.image_for(("linux", "arm64")).manifest_digest
    assert rules[arm] == "pulled-recently"
    assert rules[multi.index.index_digest] == "pulled-recently"


async def test_an_image_whose_tag_moved_away_goes_after_n_days_untagged(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    rng: random.Random,
    tmp_path: Path,
) -> None:
    mirror = await mirror_factory(
        {upstream_registry.host: upstream_registry.url},
        tag_ttl=0,
        retention={
            "cooling_period": 0,
            "policies": [
                {"name": "untagged", "not_tagged_days": 7, "repositories": ["test/ret-moving"]}
            ],
        },
    )
    first = push_image(upstream_registry, tmp_path, "test/ret-moving", "v1", [rng.randbytes(999)])
    await skopeo_pull(mirror, "test/ret-moving:v1", tmp_path / "first")
    mirror.clock.advance(3 * DAY)
    second = push_image(upstream_registry, tmp_path, "test/ret-moving", "v1", [rng.randbytes(9)])
    await skopeo_pull(mirror, "test/ret-moving:v1", tmp_path / "second")  # the tag moves

    history = mirror.services.metadata.tag_history(upstream_registry.host, "test/ret-moving")
    assert [(m.from_digest, m.to_digest) for m in history] == [
        (None, first.manifest_digest),
        (first.manifest_digest, second.manifest_digest),
    ]
    mirror.clock.advance(6 * DAY)
    early = await mirror.retention.run(dry_run=False)
    assert early.outcome.evicted == []
    assert {line["rule"] for line in early.lines()} == {"tagged", "tagged-recently"}

    mirror.clock.advance(1 * DAY)
    report = await mirror.retention.run(dry_run=False)

    assert [str(d.image.digest) for d in report.outcome.evicted] == [first.manifest_digest]
    assert report.outcome.evicted[0].reason == "no tag for 7.0 days (not tagged for 7 days)"
    assert first.manifest_digest not in on_disk(mirror)
    assert {second.manifest_digest, *(b.digest for b in second.blobs())} <= on_disk(mirror)
