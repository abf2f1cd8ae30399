"""Retention rules: each decision names the rule that retained or selected the image.

Rules are pure: ``now`` is passed in, so dry runs and tests can judge at any time.
Order: an exempt tag retains; a policy without criteria retains; otherwise the criteria decide
(``any``: one match selects, ``all``: every criterion must match); a selection still inside
the policy's cooling period is retained, and says what it would do after.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirror.oci.digest import Digest
from mirror.retention.inventory import Image
from mirror.retention.policy import DAY, RetentionPolicy


@dataclass(frozen=True, slots=True)
class Decision:
    """What retention does with one image, and why."""

    image: Image
    policy: str
    delete: bool
    # Short rule id: exempt-tag, retains-all, not-pulled, pulled-recently, not-tagged, tagged,
    # tagged-recently, cooling-period, capacity-lru, pulled-during-run.
    rule: str
    reason: str
    cooling_until: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """One criterion applied to one image."""

    matched: bool
    rule: str
    reason: str


def _days(seconds: float) -> str:
    return f"{seconds / DAY:.1f} days"


def not_pulled(image: Image, days: float, now: float) -> Verdict:
    """Selects an image whose last pull (any member of its group) is ``days`` or more ago."""
    if image.last_pull is None:
        age, what = now - image.cached_at, "never pulled; cached"
    else:
        age, what = now - image.last_pull, "last pulled"
    limit = f"not pulled for {days:g} days"
    if age >= days * DAY:
        return Verdict(True, "not-pulled", f"{what} {_days(age)} ago ({limit})")
    return Verdict(False, "pulled-recently", f"{what} {_days(age)} ago (< {limit})")


def not_tagged(image: Image, days: float, now: float) -> Verdict:
    """Selects an image that has had no tag in this mirror for ``days`` or more."""
    if image.tags:
        return Verdict(False, "tagged", f"tagged {', '.join(image.tags)}")
    age = now - image.untagged_since
    limit = f"not tagged for {days:g} days"
    if age >= days * DAY:
        return Verdict(True, "not-tagged", f"no tag for {_days(age)} ({limit})")
    return Verdict(False, "tagged-recently", f"no tag for {_days(age)} only (< {limit})")


CRITERIA = {"not_pulled_days": not_pulled, "not_tagged_days": not_tagged}
# The rule and reason of a policy without criteria.
RETAINS_ALL = ("retains-all", "policy has no criteria: retains everything")


def uniform(policy: RetentionPolicy) -> tuple[str, str] | None:
    """The rule and reason ``decide`` gives every image under ``policy`` when they depend on
    nothing about the image (no exempt tags and no criteria: it retains everything), else
    ``None`` (so a run can judge such a repository without looking at its images one by one)."""
    if policy.exempt_tags or policy.criteria():
        return None
    return RETAINS_ALL


def decide(
    image: Image, policy: RetentionPolicy, applies_since: float, now: float, cooling_period: float
) -> Decision:
    """Judge ``image`` by ``policy``, which applies to its repository since ``applies_since``
    (the later of the policy's last widening and the repository's attachment)."""
    exempt = policy.exempting(image.tags)
    if exempt is not None:
        pattern, tag = exempt
        return Decision(
            image, policy.name, False, "exempt-tag", f"tag {tag} matches exempt {pattern!r}"
        )
    criteria = policy.criteria()
    if not criteria:
        return Decision(image, policy.name, False, *RETAINS_ALL)
    verdicts = [CRITERIA[name](image, days, now) for name, days in criteria.items()]
    matched = [v for v in verdicts if v.matched]
    if policy.match == "all":
        chosen = verdicts if len(matched) == len(verdicts) else None
        kept = next((v for v in verdicts if not v.matched), None)
    else:
        chosen = matched[:1] or None
        kept = verdicts[0] if not matched else None
    if chosen is None:
        assert kept is not None
        reason = "; ".join(v.reason for v in verdicts)
        return Decision(image, policy.name, False, kept.rule, reason)
    rule = "+".join(v.rule for v in chosen)
    reason = "; ".join(v.reason for v in chosen)
    cooling_until = applies_since + cooling_period
    if now < cooling_until:
        return Decision(
            image,
            policy.name,
            False,
            "cooling-period",
            f"would delete ({rule}: {reason}) once the cooling period ends",
            cooling_until,
        )
    return Decision(image, policy.name, True, rule, reason)


def least_recently_pulled(
    images: list[Image], policies: dict[str, RetentionPolicy]
) -> list[list[Image]]:
    """Groups of images in eviction order for the cache size limit: least recently pulled
    first, skipping groups whose repository's policy exempts one of their tags.

    ``policies`` maps each repository (``HOST/REPO``) to its governing policy.
    """
    groups: dict[tuple[str, str, tuple[Digest, ...]], list[Image]] = {}
    for image in images:
        groups.setdefault((image.upstream, image.repo, image.group), []).append(image)
    eligible = [
        members
        for members in groups.values()
        if policies[members[0].repository].exempting(members[0].tags) is None
    ]
    return sorted(eligible, key=lambda m: (max(i.last_used for i in m), m[0].name))
