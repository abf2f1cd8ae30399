"""Retention across a regional tier: three replicas sharing one PostgreSQL. Policies set at
one replica govern every replica; one run at a time across the tier; the run's replica
evicts each image once (one audit line), and every replica deletes the blobs it holds."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.testing.images import random_layer
from tests.integration.conftest import Mirror, MirrorFactory
from tests.integration.retention_helpers import DAY, http_pull, on_disk, push_image
from tests.integration.test_tier_metadata import eventually
from tests.peers.registry import Registry

pytestmark = pytest.mark.integration

ADMIN = "/admin/v1/retention"


async def call(mirror: Mirror, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{mirror.url}{ADMIN}{path}", json=body) as resp:
            return resp.status, await resp.json(content_type=None)


def audit(mirror: Mirror) -> list[dict[str, Any]]:
    path = mirror.data_dir / "retention" / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_run_from_any_replica_evicts_each_image_once_tier_wide(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    postgres_dsn: str,
    rng: random.Random,
    tmp_path: Path,
) -> None:
    shared = {"backend": "postgres", "dsn": postgres_dsn}
    upstreams = {upstream_registry.host: upstream_registry.url}
    settings = {"cooling_period": 0, "interval": 0}
    a, b, c = [
        await mirror_factory(upstreams, metadata=shared, retention=settings) for _ in range(3)
    ]

    # A policy set at A is the tier's: C shows it.
    status, _ = await call(a, "POST", "/policies", {"name": "stale", "not_pulled_days": 30})
    assert status == 201
    status, _ = await call(a, "PUT", "/policies/stale/repositories/test/tier-old", {})
    assert status == 200
    status, seen = await call(c, "GET", "/policies/stale")
    assert (status, seen["repositories"]) == (200, [f"{upstream_registry.host}/test/tier-old"])

    old = push_image(upstream_registry, tmp_path, "test/tier-old", "v1", [random_layer(rng, 9_000)])
    kept = push_image(
        upstream_registry, tmp_path, "test/tier-kept", "v1", [random_layer(rng, 8_000)]
    )
    # A and B both hold the stale image's blobs (a failover moved its pulls); C holds none.
    await http_pull(a, "test/tier-old", "v1")
    await http_pull(b, "test/tier-old", "v1")
    await http_pull(a, "test/tier-kept", "v1")
    old_objects = {old.manifest_digest, *(blob.digest for blob in old.blobs())}
    assert old_objects <= on_disk(a) and old_objects <= on_disk(b)
    for replica in (a, b, c):
        replica.clock.advance(31 * DAY)

    # Runs started at A and B at once: one runs, the other is told it runs elsewhere.
    (status_a, body_a), (status_b, body_b) = await asyncio.gather(
        call(a, "POST", "/runs", {}), call(b, "POST", "/runs", {})
    )
    assert sorted((status_a, status_b)) == [200, 409]
    ran, refused = (body_a, body_b) if status_a == 200 else (body_b, body_a)
    runner, other = (a, b) if status_a == 200 else (b, a)
    assert refused["errors"][0]["code"] == "RETENTION_RUNNING"
    assert "another replica" in refused["errors"][0]["message"]
    assert [line["digest"] for line in ran["images"] if line["action"] == "delete"] == [
        old.manifest_digest
    ]

    # Each replica deletes what it holds: the runner at once, the other when told.
    assert not old_objects & on_disk(runner)
    assert await eventually(lambda: not old_objects & on_disk(other), within=10)
    assert {kept.manifest_digest, *(b.digest for b in kept.blobs())} <= on_disk(a)
    metadata = c.services.metadata
    assert metadata.tag(upstream_registry.host, "test/tier-old", "v1") is None
    assert metadata.tag(upstream_registry.host, "test/tier-kept", "v1") is not None

    # One audit line per evicted image, tier-wide; the other's lines are its own deletions.
    evicted = [e for r in (a, b, c) for e in audit(r) if e["event"] == "evict-image"]
    assert [(e["digest"], e["policy"]) for e in evicted] == [(old.manifest_digest, "stale")]
    assert {e["digest"] for e in audit(other) if e["event"].startswith("delete-")} == old_objects

    # The lock is free again: a second run (from C) finds nothing more to evict.
    status, again = await call(c, "POST", "/runs", {})
    assert status == 200 and again["evicted"] == 0
