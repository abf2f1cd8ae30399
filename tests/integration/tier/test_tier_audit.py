"""Issue 14, the audit log is the tier's: a retention run from replica B writes its lines
(the run, each eviction, each deletion) once, into the shared database and B's own file, and
replica A's admin API answers them (the console's audit view reads the same log), each line
naming the replica that acted."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mirror.testing.images import random_layer
from tests.integration.conftest import MirrorFactory
from tests.integration.retention_helpers import DAY, http_pull, push_image
from tests.integration.tier.test_tier_retention import audit, call
from tests.peers.registry import Registry

pytestmark = pytest.mark.integration


async def test_a_run_from_replica_b_shows_its_lines_on_replica_a(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    postgres_dsn: str,
    rng: random.Random,
    tmp_path: Path,
) -> None:
    shared = {"backend": "postgres", "dsn": postgres_dsn}
    upstreams = {upstream_registry.host: upstream_registry.url}
    settings = {"cooling_period": 0, "interval": 0}
    a, b = [await mirror_factory(upstreams, metadata=shared, retention=settings) for _ in "ab"]
    status, _ = await call(a, "POST", "/policies", {"name": "stale", "not_pulled_days": 30})
    assert status == 201
    status, _ = await call(a, "PUT", "/policies/stale/repositories/test/audit-old", {})
    assert status == 200
    old = push_image(
        upstream_registry, tmp_path, "test/audit-old", "v1", [random_layer(rng, 7_000)]
    )
    await http_pull(b, "test/audit-old", "v1")
    for replica in (a, b):
        replica.clock.advance(31 * DAY)

    status, report = await call(b, "POST", "/runs", {})
    assert status == 200 and report["evicted"] == 1

    # A wrote nothing itself, yet its admin API answers B's run, eviction and deletions.
    assert audit(a) == []
    status, seen = await call(a, "GET", "/audit")
    assert status == 200
    events = seen["events"]
    evicted = [e for e in events if e["event"] == "evict-image"]
    assert [(e["digest"], e["policy"]) for e in evicted] == [(old.manifest_digest, "stale")]
    deleted = {e["digest"] for e in events if e["event"] == "delete-blob"}
    assert {blob.digest for blob in old.blobs()} <= deleted
    assert {e["replica"] for e in events} == {b.config.server.listen}
    # B keeps its own file too, line for line.
    assert [e["event"] for e in audit(b)] == [e["event"] for e in events]
