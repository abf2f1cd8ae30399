"""The ``[tier]`` section: off by default, and every bad key named at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.clock import ManualClock
from mirror.config import Config, ConfigError, load_config
from mirror.tier.placement import Placement

REPLICAS = ["http://127.0.0.1:5001", "http://127.0.0.1:5002", "http://127.0.0.1:5003"]
GOOD = {"replicas": REPLICAS, "self": REPLICAS[1], "secret_file": "/run/secrets/tier"}


def test_a_mirror_is_standalone_by_default() -> None:
    assert not Config().tier.enabled


def test_a_replica_names_the_tier_itself_and_the_secret() -> None:
    tier = load_config(overrides={"tier": GOOD}, environ={}).tier
    assert tier.enabled and tier.replicas == tuple(REPLICAS) and tier.self == REPLICAS[1]
    assert not tier.cache_peer_blobs


@pytest.mark.parametrize(
    ("tier", "message"),
    [
        pytest.param({"self": REPLICAS[0]}, "tier.replicas: required", id="self-alone"),
        pytest.param(GOOD | {"self": ""}, "tier.self: required", id="no-self"),
        pytest.param(GOOD | {"self": "http://127.0.0.1:6000"}, "not one of", id="self-outside"),
        pytest.param(GOOD | {"secret_file": ""}, "tier.secret_file: required", id="no-secret"),
        pytest.param(
            GOOD | {"replicas": [*REPLICAS, "http://127.0.0.1:5001/"]}, "listed twice", id="twice"
        ),
        pytest.param(GOOD | {"replicas": ["ftp://x:1"]}, r"tier.replicas\[0\]", id="scheme"),
        pytest.param(GOOD | {"replicas": ["http://x:1/a"]}, r"tier.replicas\[0\]", id="path"),
        pytest.param(GOOD | {"peer_connect_timeout": 0}, "peer_connect_timeout", id="timeout"),
        pytest.param(GOOD | {"peer_down_for": -1}, "tier.peer_down_for", id="down-for"),
        pytest.param(GOOD | {"owner": "x"}, "tier.owner: unknown key", id="unknown"),
        pytest.param(GOOD | {"balancer": "envoy"}, "tier.balancer: one of nginx, haproxy", id="lb"),
        pytest.param(
            GOOD | {"replicas": [f"{REPLICAS[0]} weight=0", *REPLICAS[1:]]},
            "tier.replicas: .*weight must be 1 to 256",
            id="weight-0",
        ),
        pytest.param(
            GOOD | {"replicas": [f"{REPLICAS[0]} weight=257", *REPLICAS[1:]]},
            "tier.replicas: .*weight must be 1 to 256",
            id="weight-257",
        ),
        pytest.param(
            GOOD | {"replicas": [f"{REPLICAS[0]} size=2", *REPLICAS[1:]]},
            r"tier.replicas\[0\]: a replica is 'URL' or 'URL weight=N'",
            id="not-weight",
        ),
    ],
)
def test_bad_tier_settings_name_the_key(tier: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"tier": tier}, environ={})


def test_a_replica_entry_may_carry_its_weight_and_the_ring_honours_it() -> None:
    replicas = [f"{REPLICAS[0]} weight=3", REPLICAS[1], f"{REPLICAS[2]} weight=2"]
    for balancer in ("nginx", "haproxy"):
        tier = load_config(
            overrides={"tier": GOOD | {"replicas": replicas, "balancer": balancer}}, environ={}
        ).tier
        placement = Placement(tier.replicas, tier.self, ManualClock(), balancer=tier.balancer)
        weights = {m.server: m.weight for m in placement.ring.members}
        assert weights == {"127.0.0.1:5001": 3, "127.0.0.1:5002": 1, "127.0.0.1:5003": 2}
        assert placement.self_server == "127.0.0.1:5002"


def test_the_shipped_replica_example_loads() -> None:
    example = Path(__file__).resolve().parents[3] / "conf" / "tier-replica.example.toml"
    tier = load_config(example, environ={}).tier
    assert tier.enabled and tier.self in tier.replicas and len(tier.replicas) == 3
