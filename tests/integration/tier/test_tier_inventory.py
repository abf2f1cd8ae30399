"""Issue 14, redundancy after a loss: repair compares inventories and removes extra copies.

Three real replicas behind nginx over a real PostgreSQL. One is killed and an image is
pushed (its copies go to the next live replicas of each walk); the replica comes back on its
disk and fetches its share by itself; then ``mirror tier repair`` leaves every hosted digest on
exactly its ``hosted_replication`` holders, the extra copies removed after a content proof,
one audit line each. The peer requests of a pass are counted in the replicas' logs: one
inventory per peer plus one per difference, and only the inventories when nothing differs.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from mirror.testing.images import BuiltImage, build_image, random_layer
from tests.integration.tier.conftest import Tier
from tests.integration.tier.test_tier_hosted import (
    eventually_held,
    held_by,
    holders,
    image_digests,
    repair_cli,
)
from tests.integration.tier.test_tier_hosted import hosted_tier as hosted_tier  # the fixture
from tests.peers.skopeo import skopeo_copy_async

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PEER_REQUEST = re.compile(r'"(?:GET|HEAD|PUT) /_tier/(\w+)')


def peer_requests(tier: Tier) -> dict[str, int]:
    """The peer requests each kind of ``/_tier/`` route has answered so far, tier-wide."""
    counts: dict[str, int] = {}
    for replica in tier.replicas.values():
        for kind in PEER_REQUEST.findall(replica.log()):
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def audit_removals(tier: Tier) -> list[dict[str, object]]:
    """Every ``tier_extra_copy_removed`` line in the replicas' audit logs."""
    events = []
    for replica in tier.replicas.values():
        path = replica.base_dir / "data" / "retention" / "audit.jsonl"
        if path.exists():
            lines = path.read_text().splitlines()
            events += [e for e in map(json.loads, lines) if e["event"] == "tier_extra_copy_removed"]
    return events


def fresh_image(tmp_path: Path, name: str, seed: int) -> BuiltImage:
    """An image of 8 random layers in an OCI layout."""
    rng = random.Random(seed)
    layers = [random_layer(rng, rng.randrange(60_000, 200_000)) for _ in range(8)]
    return build_image(tmp_path / f"layout-{name}", "v1", layers)


async def push(tier: Tier, image: BuiltImage, name: str) -> BuiltImage:
    """skopeo pushes ``image`` to team/<name>:v1 through nginx."""
    await skopeo_copy_async(
        f"oci:{image.layout_dir}:v1",
        f"docker://127.0.0.1:{tier.front}/team/{name}:v1",
        "--dest-tls-verify=false",
    )
    return image


def run_repair(tier: Tier) -> dict[str, dict[str, object]]:
    """``mirror tier repair`` from one replica's configuration: each replica's report."""
    done = repair_cli(tier, next(iter(tier.replicas)))
    assert done.returncode == 0, done.stdout + done.stderr
    return {r["replica"]: r for r in map(json.loads, done.stdout.splitlines())}


def difference(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }


async def test_a_returning_replica_gets_its_share_and_extra_copies_are_removed(
    hosted_tier: Tier, tmp_path: Path
) -> None:
    tier = hosted_tier
    first = await push(tier, fresh_image(tmp_path, "before", 31), "before")
    # A replica that should hold some of the next image is down while it is pushed (not the
    # repository's: its upload sessions are its own). Nor the first repository's: the pushing
    # replica keeps copies beyond the factor, and the returning replica's own start-up pass
    # would remove those while the test counts them.
    second = fresh_image(tmp_path, "during", 33)
    pushers = {tier.ring.owner("team/during"), tier.ring.owner("team/before")}
    candidates = [s for s in tier.replicas if s not in pushers]
    dead = max(candidates, key=lambda s: sum(s in holders(tier, d) for d in image_digests(second)))
    await tier.replicas[dead].kill()
    await push(tier, second, "during")
    digests = image_digests(first) + image_digests(second)
    missed = [d for d in image_digests(second) if dead in holders(tier, d)]
    assert missed and all(dead not in held_by(tier, d) for d in missed)

    # It comes back on its own disk and fetches what it missed (its start-up pass).
    await tier.replicas[dead].start()
    await eventually_held(tier, digests)
    extra = {d: held_by(tier, d) - holders(tier, d) for d in digests}
    assert any(extra.values()), "the push during the loss left copies beyond the factor"

    before = peer_requests(tier)
    reports = run_repair(tier)
    sent = difference(before, peer_requests(tier))
    removed = sum(int(r["removed"]) for r in reports.values())  # type: ignore[call-overload]
    assert removed == sum(len(servers) for servers in extra.values())
    for digest in digests:
        assert held_by(tier, digest) == holders(tier, digest), digest
    # One audit line per removed copy, naming the replica and the holders that proved theirs.
    events = audit_removals(tier)
    assert sorted((e["digest"], e["replica"]) for e in events) == sorted(
        (d, s) for d, servers in extra.items() for s in servers
    )
    assert all(set(map(str, e["holders"])) == holders(tier, str(e["digest"])) for e in events)  # type: ignore[call-overload]
    # Requests: one inventory per peer of each replica, and a content proof per holder of
    # each removed copy; nothing was missing, so no copy was sent.
    assert sent == {"inventory": 6, "proof": 2 * removed}, sent
    assert all(r["missing"] == [] and r["restored"] == 0 for r in reports.values())

    # With nothing to do, a pass is the inventories alone, however many digests are hosted.
    before = peer_requests(tier)
    reports = run_repair(tier)
    assert difference(before, peer_requests(tier)) == {"inventory": 6}
    assert all(r["checked"] == len(set(digests)) for r in reports.values())
    assert all(r["peer_requests"] == 2 for r in reports.values())
