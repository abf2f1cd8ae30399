"""Retention rules: each image's decision names the rule that retained or selected it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mirror.oci.digest import Digest
from mirror.retention.inventory import Image
from mirror.retention.policy import DAY, RetentionPolicy
from mirror.retention.rules import decide, least_recently_pulled

NOW = 1_700_000_000.0
COOLING = 6 * 3600.0


def image(
    *,
    pulled_days_ago: float | None = None,
    cached_days_ago: float = 100,
    tags: tuple[str, ...] = (),
    untagged_days_ago: float | None = None,
    repo: str = "team/app",
    digest: str = "sha256:" + "a" * 64,
) -> Image:
    """An image with facts given in days before ``NOW``."""
    cached_at = NOW - cached_days_ago * DAY
    untagged_since = NOW if tags else NOW - (untagged_days_ago or cached_days_ago) * DAY
    parsed = Digest.parse(digest)
    return Image(
        upstream="registry.test",
        repo=repo,
        digest=parsed,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=500,
        cached_at=cached_at,
        own_pull=None if pulled_days_ago is None else NOW - pulled_days_ago * DAY,
        tags=tags,
        last_pull=None if pulled_days_ago is None else NOW - pulled_days_ago * DAY,
        last_tagged=NOW if tags else None,
        untagged_since=untagged_since,
        group=(parsed,),
    )


STALE_30 = RetentionPolicy("stale", not_pulled_days=30)
UNTAGGED_7 = RetentionPolicy("untagged", not_tagged_days=7)
BOTH_ANY = RetentionPolicy("both", not_pulled_days=30, not_tagged_days=7)
BOTH_ALL = RetentionPolicy("both", not_pulled_days=30, not_tagged_days=7, match="all")
EXEMPT = RetentionPolicy("exempt", not_pulled_days=30, exempt_tags=("latest", "v*", "release-*"))

RULES = [
    # Not pulled for N days.
    pytest.param(STALE_30, image(pulled_days_ago=31), True, "not-pulled", id="not-pulled-31d"),
    pytest.param(STALE_30, image(pulled_days_ago=30), True, "not-pulled", id="not-pulled-exactly"),
    pytest.param(STALE_30, image(pulled_days_ago=29), False, "pulled-recently", id="pulled-29d"),
    pytest.param(
        STALE_30,
        image(pulled_days_ago=None, cached_days_ago=40),
        True,
        "not-pulled",
        id="never-pulled-cached-long-ago",
    ),
    pytest.param(
        STALE_30,
        image(pulled_days_ago=None, cached_days_ago=2),
        False,
        "pulled-recently",
        id="never-pulled-cached-recently",
    ),
    # Not tagged for N days.
    pytest.param(UNTAGGED_7, image(tags=("v1",)), False, "tagged", id="tagged"),
    pytest.param(
        UNTAGGED_7, image(untagged_days_ago=8), True, "not-tagged", id="tag-moved-away-8d"
    ),
    pytest.param(
        UNTAGGED_7, image(untagged_days_ago=3), False, "tagged-recently", id="tag-moved-away-3d"
    ),
    pytest.param(
        UNTAGGED_7,
        image(cached_days_ago=10),
        True,
        "not-tagged",
        id="never-tagged-since-cached",
    ),
    # Combinations.
    pytest.param(
        BOTH_ANY,
        image(pulled_days_ago=1, untagged_days_ago=8),
        True,
        "not-tagged",
        id="any-one-criterion-selects",
    ),
    pytest.param(
        BOTH_ANY,
        image(pulled_days_ago=1, tags=("v1",)),
        False,
        "pulled-recently",
        id="any-none-matches",
    ),
    pytest.param(
        BOTH_ALL,
        image(pulled_days_ago=1, untagged_days_ago=8),
        False,
        "pulled-recently",
        id="all-needs-every-criterion",
    ),
    pytest.param(
        BOTH_ALL,
        image(pulled_days_ago=31, untagged_days_ago=8),
        True,
        "not-pulled+not-tagged",
        id="all-every-criterion-matches",
    ),
    # Exempt tags, exact and glob.
    pytest.param(
        EXEMPT, image(pulled_days_ago=90, tags=("latest",)), False, "exempt-tag", id="exempt-exact"
    ),
    pytest.param(
        EXEMPT, image(pulled_days_ago=90, tags=("v1.2.3",)), False, "exempt-tag", id="exempt-glob"
    ),
    pytest.param(
        EXEMPT,
        image(pulled_days_ago=90, tags=("dev", "release-7")),
        False,
        "exempt-tag",
        id="exempt-one-of-several",
    ),
    pytest.param(
        EXEMPT,
        image(pulled_days_ago=90, tags=("latest-rc", "nightly")),
        True,
        "not-pulled",
        id="exact-exempt-is-not-a-prefix",
    ),
    # Global policy by default.
    pytest.param(
        RetentionPolicy("global"),
        image(pulled_days_ago=900, cached_days_ago=1000),
        False,
        "retains-all",
        id="global-default-retains-everything",
    ),
    pytest.param(
        RetentionPolicy("global", not_pulled_days=30),
        image(pulled_days_ago=31),
        True,
        "not-pulled",
        id="global-edited",
    ),
]


@pytest.mark.parametrize(("policy", "subject", "delete", "rule"), RULES)
def test_rule(policy: RetentionPolicy, subject: Image, delete: bool, rule: str) -> None:
    decision = decide(subject, policy, applies_since=0.0, now=NOW, cooling_period=COOLING)

    assert (decision.delete, decision.rule) == (delete, rule), decision.reason
    assert decision.policy == policy.name


@pytest.mark.parametrize(
    ("applies_hours_ago", "delete", "rule"),
    [
        pytest.param(1, False, "cooling-period", id="new-policy-cools"),
        pytest.param(5.9, False, "cooling-period", id="still-cooling"),
        pytest.param(6, True, "not-pulled", id="cooling-over"),
        pytest.param(48, True, "not-pulled", id="long-ago"),
    ],
)
def test_cooling_period_holds_selections_back(
    applies_hours_ago: float, delete: bool, rule: str
) -> None:
    since = NOW - applies_hours_ago * 3600
    decision = decide(image(pulled_days_ago=90), STALE_30, since, NOW, COOLING)

    assert (decision.delete, decision.rule) == (delete, rule)
    if rule == "cooling-period":
        assert decision.cooling_until == since + COOLING
        assert "would delete (not-pulled" in decision.reason


def test_cooling_never_retains_what_the_criteria_keep() -> None:
    decision = decide(image(pulled_days_ago=1), STALE_30, NOW, NOW, COOLING)

    assert (decision.delete, decision.rule) == (False, "pulled-recently")


def test_reasons_state_the_facts() -> None:
    decision = decide(image(pulled_days_ago=31.5), STALE_30, 0.0, NOW, COOLING)

    assert decision.reason == "last pulled 31.5 days ago (not pulled for 30 days)"


def test_least_recently_pulled_order_skips_exempt_groups() -> None:
    old = image(pulled_days_ago=50, digest="sha256:" + "1" * 64)
    older_exempt = image(pulled_days_ago=90, tags=("v1",), digest="sha256:" + "2" * 64)
    new = image(pulled_days_ago=1, digest="sha256:" + "3" * 64)
    never = replace(image(cached_days_ago=70, digest="sha256:" + "4" * 64), last_pull=None)
    policies = {old.repository: EXEMPT}

    order = least_recently_pulled([new, old, older_exempt, never], policies)

    assert [group[0].digest for group in order] == [never.digest, old.digest, new.digest]
