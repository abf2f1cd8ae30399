"""Retention policies and their repositories, persisted in their own diskcache database.

The whole policy state is one record, changed in a transaction (read, change, write), so
concurrent edits from the server and an offline ``mirror retention`` command never interleave.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import diskcache

from mirror.errors import ErrorCode, RegistryError

GLOBAL = "global"
MATCH_MODES = ("any", "all")
CRITERIA = ("not_pulled_days", "not_tagged_days")
EDITABLE = (*CRITERIA, "exempt_tags", "match")
DAY = 24 * 3600.0

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!]{1,128}$")


def policy_error(code: ErrorCode, message: str, **detail: Any) -> RegistryError:
    """An admin-API error carrying the facts."""
    return RegistryError(code, message, detail=detail or None)


@dataclass(frozen=True, slots=True)
class Policy:
    """Selection criteria for deleting images; no criterion set means "retain everything"."""

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
        return dataclasses.asdict(self) | {"exempt_tags": list(self.exempt_tags)}


def validate_policy(policy: Policy) -> Policy:
    """Return ``policy`` or raise ``POLICY_INVALID`` naming the bad field."""
    if not _NAME.match(policy.name):
        raise policy_error(
            ErrorCode.POLICY_INVALID,
            "policy name must be lowercase letters, digits, '.', '_' or '-' (1-63)",
            name=policy.name,
        )
    for name in CRITERIA:
        days = getattr(policy, name)
        if days is not None and (
            isinstance(days, bool)
            or not isinstance(days, int | float)
            or not math.isfinite(days)
            or days < 0
        ):
            raise policy_error(
                ErrorCode.POLICY_INVALID, f"{name} must be a number >= 0", field=name, value=days
            )
    for pattern in policy.exempt_tags:
        if not isinstance(pattern, str) or not _TAG_PATTERN.match(pattern):
            raise policy_error(
                ErrorCode.POLICY_INVALID,
                "exempt tag must be a tag or a glob of tag characters and * ? [ ] !",
                field="exempt_tags",
                value=pattern,
            )
    if policy.match not in MATCH_MODES:
        raise policy_error(
            ErrorCode.POLICY_INVALID, "match must be 'any' or 'all'", value=policy.match
        )
    return policy


def _mode(policy: Policy) -> str:
    return "all" if policy.match == "all" and len(policy.criteria()) > 1 else "any"


def widens(old: Policy, new: Policy) -> bool:
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


@dataclass(frozen=True, slots=True)
class Attachment:
    """The policy governing a repository (``GLOBAL`` after an explicit detach), and since when."""

    policy: str
    since: float


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Every policy and which repositories (``HOST/REPO``) each governs."""

    policies: tuple[Policy, ...] = (Policy(GLOBAL),)
    attachments: tuple[tuple[str, Attachment], ...] = field(default=())

    def policy(self, name: str) -> Policy:
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise policy_error(ErrorCode.POLICY_UNKNOWN, f"no retention policy {name!r}", name=name)

    def attachment(self, repository: str) -> Attachment | None:
        return dict(self.attachments).get(repository)

    def repositories(self, name: str) -> tuple[str, ...]:
        """The repositories explicitly attached to custom policy ``name``."""
        return tuple(sorted(r for r, a in self.attachments if a.policy == name != GLOBAL))

    def governing(self, repository: str) -> tuple[Policy, float]:
        """The policy of ``repository`` and since when it applies to it (for cooling)."""
        attachment = self.attachment(repository)
        policy = self.policy(attachment.policy if attachment else GLOBAL)
        since = attachment.since if attachment else 0.0
        return policy, max(policy.widened_at, since)

    def _with(
        self,
        policies: Iterable[Policy] | None = None,
        attached: Mapping[str, Attachment] | None = None,
    ) -> PolicyState:
        merged = dict(self.attachments) | dict(attached or {})
        return PolicyState(
            tuple(policies) if policies is not None else self.policies,
            tuple(sorted(merged.items())),
        )


class RetentionStore:
    """Persisted retention state: policies, attachments, and blobs whose deletion was deferred
    because a client was reading them."""

    def __init__(self, directory: Path) -> None:
        self._db = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**62)

    def state(self) -> PolicyState:
        state = self._db.get("policies")
        return state if isinstance(state, PolicyState) else PolicyState()

    def _update(self, change: Callable[[PolicyState], PolicyState]) -> PolicyState:
        with self._db.transact():
            state = change(self.state())
            self._db.set("policies", state)
        return state

    def create(self, policy: Policy, now: float) -> Policy:
        """Add a custom policy; its cooling period starts now."""
        policy = validate_policy(replace(policy, created_at=now, widened_at=now))

        def change(state: PolicyState) -> PolicyState:
            if any(p.name == policy.name for p in state.policies):
                raise policy_error(
                    ErrorCode.POLICY_CONFLICT, f"policy {policy.name!r} exists", name=policy.name
                )
            return state._with((*state.policies, policy))

        self._update(change)
        return policy

    def edit(self, name: str, changes: Mapping[str, Any], now: float) -> Policy:
        """Change criteria, exempt tags or match mode; widening restarts the cooling period."""
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise policy_error(
                ErrorCode.POLICY_INVALID, f"cannot edit {', '.join(unknown)}", editable=EDITABLE
            )
        values = dict(changes)
        if "exempt_tags" in values:
            tags = values["exempt_tags"]
            if not isinstance(tags, list | tuple):
                raise policy_error(ErrorCode.POLICY_INVALID, "exempt_tags must be a list")
            values["exempt_tags"] = tuple(tags)
        edited: list[Policy] = []

        def change(state: PolicyState) -> PolicyState:
            old = state.policy(name)
            new = validate_policy(replace(old, **values))
            if widens(old, new):
                new = replace(new, widened_at=now)
            edited.append(new)
            return state._with(new if p.name == name else p for p in state.policies)

        self._update(change)
        return edited[-1]

    def delete(self, name: str, now: float) -> None:
        """Remove a custom policy; its repositories fall under the global policy from now."""
        if name == GLOBAL:
            raise policy_error(ErrorCode.POLICY_CONFLICT, "the global policy cannot be deleted")

        def change(state: PolicyState) -> PolicyState:
            state.policy(name)
            moved = {repo: Attachment(GLOBAL, now) for repo in state.repositories(name)}
            return state._with((p for p in state.policies if p.name != name), moved)

        self._update(change)

    def attach(self, name: str, repository: str, now: float, *, move: bool = False) -> None:
        """Put ``repository`` under custom policy ``name``; if another custom policy has it,
        that is a ``POLICY_CONFLICT`` unless ``move``."""
        if name == GLOBAL:
            raise policy_error(
                ErrorCode.POLICY_CONFLICT,
                "repositories fall under the global policy by detaching them",
            )

        def change(state: PolicyState) -> PolicyState:
            state.policy(name)
            current = state.attachment(repository)
            if current is not None and current.policy == name:
                return state
            if current is not None and current.policy != GLOBAL and not move:
                raise policy_error(
                    ErrorCode.POLICY_CONFLICT,
                    f"repository {repository!r} belongs to policy {current.policy!r}; "
                    "detach it first or move it explicitly",
                    repository=repository,
                    policy=current.policy,
                )
            return state._with(attached={repository: Attachment(name, now)})

        self._update(change)

    def detach(self, name: str, repository: str, now: float) -> None:
        """Return ``repository`` from custom policy ``name`` to the global policy."""

        def change(state: PolicyState) -> PolicyState:
            state.policy(name)
            current = state.attachment(repository)
            if current is None or current.policy != name:
                raise policy_error(
                    ErrorCode.POLICY_UNKNOWN,
                    f"repository {repository!r} is not attached to policy {name!r}",
                    repository=repository,
                )
            return state._with(attached={repository: Attachment(GLOBAL, now)})

        self._update(change)

    def declare(self, policy: Policy, repositories: Iterable[str], now: float) -> None:
        """Make the store match a policy declared in the config file: create or edit it, and
        move its repositories to it."""
        changes = {name: getattr(policy, name) for name in EDITABLE}
        if any(p.name == policy.name for p in self.state().policies):
            self.edit(policy.name, changes, now)
        else:
            self.create(policy, now)
        for repository in repositories:
            self.attach(policy.name, repository, now, move=True)

    def deferred(self) -> dict[str, float]:
        """Blobs left for a later run, with when they were first left: in use then, or not
        cached yet (a client that already had the manifest may still fill them)."""
        value = self._db.get("deferred")
        return dict(value) if isinstance(value, dict) else {}

    def set_deferred(self, deferred: Mapping[str, float]) -> None:
        self._db.set("deferred", dict(deferred))

    def close(self) -> None:
        self._db.close()
