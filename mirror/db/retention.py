"""Retention policies and their repositories, persisted in their own diskcache database, or
with a regional tier in the shared PostgreSQL (``SharedState``).

The whole policy state is one record, changed in a transaction (read, change, write), so
concurrent edits from the server and an offline ``mirror retention`` command (or from two
replicas) never interleave. Deferred blob deletions name blobs this replica holds: they stay
in its own database either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import diskcache

from mirror.db.pickled import disk_naming, stored_in
from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.retention.policy import GLOBAL, PolicyEdit, RetentionPolicy, widens


def policy_error(code: ErrorCode, message: str, **detail: Any) -> RegistryError:
    """An admin-API error about the policy state, carrying the facts."""
    return RegistryError(code, message, detail=detail or None)


@dataclass(frozen=True, slots=True)
class Attachment:
    """The policy governing a repository (``GLOBAL`` after an explicit detach), and since when."""

    policy: str
    since: float


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Every policy and which repositories (``HOST/REPO``) each governs."""

    policies: tuple[RetentionPolicy, ...] = (RetentionPolicy(GLOBAL),)
    attachments: tuple[tuple[str, Attachment], ...] = field(default=())

    def policy(self, name: str) -> RetentionPolicy:
        """The policy named ``name``; ``POLICY_UNKNOWN`` if there is none."""
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise policy_error(ErrorCode.POLICY_UNKNOWN, f"no retention policy {name!r}", name=name)

    def attachment(self, repository: str) -> Attachment | None:
        """The explicit attachment of ``repository``, or ``None`` (it follows the global policy)."""
        return dict(self.attachments).get(repository)

    def repositories(self, name: str) -> tuple[str, ...]:
        """The repositories explicitly attached to custom policy ``name``."""
        return tuple(sorted(r for r, a in self.attachments if a.policy == name != GLOBAL))

    def governing(self, repository: str) -> tuple[RetentionPolicy, float]:
        """The policy of ``repository`` and since when it applies to it (for cooling)."""
        attachment = self.attachment(repository)
        policy = self.policy(attachment.policy if attachment else GLOBAL)
        since = attachment.since if attachment else 0.0
        return policy, max(policy.widened_at, since)

    def _with(
        self,
        policies: Iterable[RetentionPolicy] | None = None,
        attached: Mapping[str, Attachment] | None = None,
    ) -> PolicyState:
        merged = dict(self.attachments) | dict(attached or {})
        return PolicyState(
            tuple(policies) if policies is not None else self.policies,
            tuple(sorted(merged.items())),
        )


# Pickles name classes by module and name: the records keep the names they were first stored
# under (``mirror.store.retention``; retention policies as ``Policy``).
_DISK = disk_naming(
    stored_in(
        "mirror.store.retention", Attachment, PolicyState, renamed={RetentionPolicy: "Policy"}
    )
)


# The keys of the shared part of the state.
POLICIES = "policies"
UNREFERENCED = "hosted-unreferenced"


class SharedState(Protocol):
    """The part of the retention state a tier shares (``POLICIES``, ``UNREFERENCED``), and the
    tier's run lock: ``mirror.db.postgres.retention.PostgresRetention``."""

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""

    def set(self, key: str, value: Any) -> bool:
        """Store ``value`` under ``key``."""

    def transact(self) -> AbstractContextManager[Any]:
        """A transaction of the calls made inside it, serialised across the tier."""

    def begin_run(self) -> bool:
        """Take the tier's run lock; ``False`` when another replica holds it."""

    def end_run(self) -> None:
        """Release the run lock taken by ``begin_run``."""

    def release(self, deferred: Mapping[str, float], now: float) -> None:
        """Tell every replica of blobs a run left for the replicas that hold them."""

    def released(self, after: int) -> list[tuple[int, str, float]]:
        """The released rows after row ``after``: (row, digest, since)."""

    def watch(self, on_release: Callable[[], None]) -> None:
        """Call ``on_release`` (on another thread) when another replica released blobs."""

    def close(self) -> None:
        """Disconnect."""


class RetentionStore:
    """Persisted retention state: policies, attachments, and blobs whose deletion was deferred
    because a client was reading them. With ``shared`` (a tier), the policies, attachments and
    unreferenced hosted links are the tier's, the deferred blobs this replica's."""

    def __init__(self, directory: Path, *, shared: SharedState | None = None) -> None:
        self._db = diskcache.Cache(
            str(directory), disk=_DISK, eviction_policy="none", size_limit=2**62
        )
        self._shared = shared
        self._records: SharedState | diskcache.Cache = shared if shared is not None else self._db
        # The last released row of the tier ``deferred`` has read (saved by ``set_deferred``).
        self._read_through = 0

    @property
    def shared(self) -> bool:
        """Whether the policies are a tier's (in the shared database)."""
        return self._shared is not None

    def begin_run(self) -> bool:
        """Take the run lock of the tier (a single node's is always free: its runs are
        serialised by the service); ``False`` while another replica runs."""
        return self._shared.begin_run() if self._shared is not None else True

    def end_run(self) -> None:
        """Release what ``begin_run`` took."""
        if self._shared is not None:
            self._shared.end_run()

    def state(self) -> PolicyState:
        """The whole policy state as last written (an empty state before the first write)."""
        state = self._records.get(POLICIES)
        return state if isinstance(state, PolicyState) else PolicyState()

    def _update(self, change: Callable[[PolicyState], PolicyState]) -> PolicyState:
        with self._records.transact():
            state = change(self.state())
            self._records.set(POLICIES, state)
        return state

    def create(self, policy: RetentionPolicy, now: float) -> RetentionPolicy:
        """Add a custom policy; its cooling period starts now."""
        policy = replace(policy, created_at=now, widened_at=now).validated()

        def change(state: PolicyState) -> PolicyState:
            if any(p.name == policy.name for p in state.policies):
                raise policy_error(
                    ErrorCode.POLICY_CONFLICT, f"policy {policy.name!r} exists", name=policy.name
                )
            return state._with((*state.policies, policy))

        self._update(change)
        return policy

    def edit(self, name: str, edit: PolicyEdit, now: float) -> RetentionPolicy:
        """Change criteria, exempt tags or match mode; widening restarts the cooling period.
        ``POLICY_UNKNOWN`` without such a policy, ``PolicyInvalid`` if the result is malformed."""
        edited: list[RetentionPolicy] = []

        def change(state: PolicyState) -> PolicyState:
            old = state.policy(name)
            new = edit.apply(old)
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

    def declare(self, policy: RetentionPolicy, repositories: Iterable[str], now: float) -> None:
        """Make the store match a policy declared in the config file: create or edit it, and
        move its repositories to it."""
        if any(p.name == policy.name for p in self.state().policies):
            self.edit(policy.name, PolicyEdit.to_match(policy), now)
        else:
            self.create(policy, now)
        for repository in repositories:
            self.attach(policy.name, repository, now, move=True)

    def deferred(self) -> dict[Digest, float]:
        """Blobs left for a later run, with when they were first left: in use then, or not
        cached yet (a client that already had the manifest may still fill them)."""
        value = self._db.get("deferred")
        stored = dict(value) if isinstance(value, dict) else {}
        if self._shared is not None:
            # With a tier: and what the other replicas' runs released since the last read.
            through = self._db.get("released-through", 0)
            for row, digest, since in self._shared.released(through):
                stored[digest] = min(since, stored.get(digest, since))
                through = row
            self._read_through = through
        return {Digest.parse(digest): since for digest, since in stored.items()}

    def set_deferred(self, deferred: Mapping[Digest, float]) -> None:
        """Replace the deferred blobs (stored by their digest strings); with a tier, the
        released rows ``deferred`` read are done."""
        with self._db.transact():
            self._db.set("deferred", {str(digest): since for digest, since in deferred.items()})
            if self._shared is not None:
                self._db.set("released-through", self._read_through)

    def watch(self, on_release: Callable[[], None]) -> None:
        """Call ``on_release`` (from another thread) when another replica of the tier released
        blobs; a single node never does."""
        if self._shared is not None:
            self._shared.watch(on_release)

    def release(self, deferred: Mapping[Digest, float], now: float) -> None:
        """Leave the blobs a run could not delete itself (held elsewhere, or in use) to every
        replica of the tier: each deletes those it holds (a single node: nothing to do)."""
        if self._shared is not None:
            self._shared.release({str(d): since for d, since in deferred.items()}, now)

    def unreferenced(self) -> dict[tuple[str, str, Digest], float]:
        """Links of hosted repositories that no manifest there refers to, ``(upstream, repo,
        digest)``, with when the collector first found each so (its grace runs from then)."""
        value = self._records.get(UNREFERENCED)
        stored = dict(value) if isinstance(value, dict) else {}
        return {(u, r, Digest.parse(d)): since for (u, r, d), since in stored.items()}

    def set_unreferenced(self, found: Mapping[tuple[str, str, Digest], float]) -> None:
        """Replace the unreferenced hosted links (stored by their digest strings)."""
        stored = {(u, r, str(d)): since for (u, r, d), since in found.items()}
        self._records.set(UNREFERENCED, stored)

    def close(self) -> None:
        """Close the database (and the shared one's connection)."""
        try:
            if self._shared is not None:
                self._shared.close()
        finally:
            self._db.close()
