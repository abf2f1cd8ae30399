"""Retention policies as values: the criteria for deleting images, their validation, edits and
widening (pure: no storage, no HTTP).

A request's JSON becomes a ``RetentionPolicy`` or a ``PolicyEdit`` here (``parse_policy``,
``parse_edit``); a bad field is a ``PolicyInvalid`` naming it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

from mirror.errors import ErrorCode, RegistryError

GLOBAL = "global"
MATCH_MODES = ("any", "all")
CRITERIA = ("not_pulled_days", "not_tagged_days")
EDITABLE = (*CRITERIA, "exempt_tags", "match")
DAY = 24 * 3600.0

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!]{1,128}$")


class PolicyInvalid(RegistryError):
    """A retention policy (or a change to one) is malformed: ``POLICY_INVALID`` with the facts
    (``field`` names the bad field when there is one)."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(ErrorCode.POLICY_INVALID, message, detail=detail or None)
        self.field: str | None = detail.get("field")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Selection criteria for deleting images; no criterion set means "retain everything"."""

    # Stored pickles carry these fields in this order: append, never reorder.
    name: str
    not_pulled_days: float | None = None
    not_tagged_days: float | None = None
    exempt_tags: tuple[str, ...] = ()
    match: str = "any"
    created_at: float = 0.0
    # When the policy last became able to select more images; its cooling period counts
    # from here.
    widened_at: float = 0.0

    @property
    def is_global(self) -> bool:
        """Whether this is the global policy (every repository without a custom one)."""
        return self.name == GLOBAL

    def criteria(self) -> dict[str, float]:
        """The criteria that are set, by name, in days."""
        found = {name: getattr(self, name) for name in CRITERIA}
        return {name: days for name, days in found.items() if days is not None}

    def exempting(self, tags: Iterable[str]) -> tuple[str, str] | None:
        """``(pattern, tag)`` of the first exempt pattern one of ``tags`` matches."""
        for pattern in self.exempt_tags:
            for tag in sorted(tags):
                if fnmatchcase(tag, pattern):
                    return pattern, tag
        return None

    def as_json(self) -> dict[str, Any]:
        """The policy's fields as JSON values."""
        return dataclasses.asdict(self) | {"exempt_tags": list(self.exempt_tags)}

    def validated(self) -> RetentionPolicy:
        """This policy, or ``PolicyInvalid`` naming the first bad field."""
        if not _NAME.match(self.name):
            raise PolicyInvalid(
                "policy name must be lowercase letters, digits, '.', '_' or '-' (1-63)",
                name=self.name,
            )
        for name in CRITERIA:
            days = getattr(self, name)
            if days is not None and (
                isinstance(days, bool)
                or not isinstance(days, int | float)
                or not math.isfinite(days)
                or days < 0
            ):
                raise PolicyInvalid(f"{name} must be a number >= 0", field=name, value=days)
        for pattern in self.exempt_tags:
            if not isinstance(pattern, str) or not _TAG_PATTERN.match(pattern):
                raise PolicyInvalid(
                    "exempt tag must be a tag or a glob of tag characters and * ? [ ] !",
                    field="exempt_tags",
                    value=pattern,
                )
        if self.match not in MATCH_MODES:
            raise PolicyInvalid("match must be 'any' or 'all'", value=self.match)
        return self


class Keep(enum.Enum):
    """The value of a ``PolicyEdit`` field the edit leaves as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class PolicyEdit:
    """A change to a policy's criteria, exempt tags or match mode (``KEEP``: unchanged)."""

    not_pulled_days: float | Keep | None = KEEP
    not_tagged_days: float | Keep | None = KEEP
    exempt_tags: tuple[str, ...] | Keep = KEEP
    match: str | Keep = KEEP

    def changes(self) -> dict[str, Any]:
        """The fields this edit sets, by name."""
        found = {name: getattr(self, name) for name in EDITABLE}
        return {name: value for name, value in found.items() if value is not KEEP}

    def apply(self, policy: RetentionPolicy) -> RetentionPolicy:
        """``policy`` with this edit made, or ``PolicyInvalid`` naming the bad field."""
        return replace(policy, **self.changes()).validated()

    @classmethod
    def to_match(cls, policy: RetentionPolicy) -> PolicyEdit:
        """The edit that makes any policy's editable fields those of ``policy``."""
        return cls(policy.not_pulled_days, policy.not_tagged_days, policy.exempt_tags, policy.match)


def _exempt_tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise PolicyInvalid("exempt_tags must be a list")
    return tuple(value)


def parse_policy(spec: Mapping[str, Any]) -> RetentionPolicy:
    """A new policy from ``{"name": ..., criteria...}`` (request JSON); ``PolicyInvalid`` when a
    field is unknown, missing or malformed."""
    unknown = sorted(set(spec) - {"name", *EDITABLE})
    if unknown or not isinstance(spec.get("name"), str):
        raise PolicyInvalid("expected a name and any of " + ", ".join(EDITABLE), unknown=unknown)
    fields = dict(spec)
    if "exempt_tags" in fields:
        fields["exempt_tags"] = _exempt_tags(fields["exempt_tags"])
    return RetentionPolicy(**fields).validated()


def parse_edit(changes: Mapping[str, Any]) -> PolicyEdit:
    """An edit from ``{criteria to change}`` (request JSON); ``PolicyInvalid`` when a field
    cannot be edited. Values are checked when the edit is applied to its policy."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise PolicyInvalid(f"cannot edit {', '.join(unknown)}", editable=EDITABLE)
    fields = dict(changes)
    if "exempt_tags" in fields:
        fields["exempt_tags"] = _exempt_tags(fields["exempt_tags"])
    return PolicyEdit(**fields)


def _mode(policy: RetentionPolicy) -> str:
    return "all" if policy.match == "all" and len(policy.criteria()) > 1 else "any"


def widens(old: RetentionPolicy, new: RetentionPolicy) -> bool:
    """Whether ``new`` may select an image ``old`` does not (a criterion selects images whose
    age exceeds its days, so fewer days select more)."""
    if set(old.exempt_tags) - set(new.exempt_tags):
        return True
    new_c, old_c = new.criteria(), old.criteria()
    if not new_c:
        return False
    if not old_c:
        return True

    def looser(name: str) -> bool:
        return name not in old_c or new_c[name] < old_c[name]

    if _mode(new) == "any":
        # union(new) within old: each new criterion must be within an old one.
        if _mode(old) == "any":
            return any(looser(name) for name in new_c)
        return True
    # intersection(new) within old.
    if _mode(old) == "any":
        return all(looser(name) for name in new_c)
    return any(name not in new_c or new_c[name] < old_c[name] for name in old_c)
