"""Tenancy resources in the identity database: policies, repositories, pull-through rules."""

from __future__ import annotations

from dataclasses import replace

from yarl import URL

from mirror.auth.policy.grammar import PolicyError, Statement, parse_statements
from mirror.crypto.secrets import new_token_id
from mirror.db.identity.base import RecordsDb, exists, unknown
from mirror.db.identity.records import (
    AccessPolicy,
    PullThroughRule,
    Repository,
    group_name,
    repository_name,
)
from mirror.errors import ErrorCode, RegistryError
from mirror.oci.names import validate_name


def is_rule_url(url: str) -> bool:
    """Whether ``url`` is ``http(s)://host[:port][/path]`` (no credentials, query or fragment)."""
    try:
        parsed = URL(url)
    except ValueError:
        return False
    return (
        parsed.scheme in ("http", "https")
        and bool(parsed.raw_host)
        and parsed.user is None
        and parsed.password is None
        and not parsed.query_string
        and not parsed.fragment
    )


class TenancyResources(RecordsDb):
    """Policies (parsed when saved: all statements or none), repositories and rules."""

    # Policies ---------------------------------------------------------------------------

    def set_policy(self, tenancy: str, name: str, statements: tuple[str, ...]) -> AccessPolicy:
        """Create or replace a policy; every statement must parse (``POLICY_INVALID`` naming
        the first that does not) or nothing is saved."""
        self.require_tenancy(tenancy)
        group_name(name)
        try:
            parse_statements(statements)
        except PolicyError as exc:
            raise RegistryError(
                ErrorCode.POLICY_INVALID,
                str(exc),
                detail={
                    "statement": exc.index,
                    "column": exc.column,
                    "expected": exc.expected,
                    "found": exc.found,
                },
            ) from None
        record = AccessPolicy(tenancy, name, tuple(statements))
        self._put(("policy", tenancy, name), record)
        return record

    def policies(self, tenancy: str) -> list[AccessPolicy]:
        return self._scan("policy", tenancy, AccessPolicy)

    def delete_policy(self, tenancy: str, name: str) -> None:
        if self._get(("policy", tenancy, name), AccessPolicy) is None:
            raise unknown("policy", policy=name)
        self._delete(("policy", tenancy, name))

    def statements(self, tenancy: str) -> tuple[Statement, ...]:
        """Every parsed statement of the tenancy's policies."""
        return self._memoised(
            ("statements", tenancy),
            lambda: tuple(
                s for p in self.policies(tenancy) for s in parse_statements(list(p.statements))
            ),
        )

    # Repositories -----------------------------------------------------------------------

    def create_repository(
        self, tenancy: str, name: str, now: float, *, public: bool = False, exist_ok: bool = False
    ) -> Repository:
        self.require_tenancy(tenancy)
        repository_name(name)
        with self._db.transact():
            found = self.repository(tenancy, name)
            if found is not None:
                if exist_ok:
                    return found
                raise exists("repository", repository=f"{tenancy}/{name}")
            record = Repository(tenancy, name, public, now)
            self._put(("repo", tenancy, name), record)
        return record

    def repository(self, tenancy: str, name: str) -> Repository | None:
        return self._memoised(
            ("repo", tenancy, name), lambda: self._get(("repo", tenancy, name), Repository)
        )

    def repositories(self, tenancy: str) -> list[Repository]:
        return self._scan("repo", tenancy, Repository)

    def set_public(self, tenancy: str, name: str, public: bool) -> Repository:
        record = self.repository(tenancy, name)
        if record is None:
            raise unknown("repository", repository=f"{tenancy}/{name}")
        record = replace(record, public=public)
        self._put(("repo", tenancy, name), record)
        return record

    def delete_repository(self, tenancy: str, name: str) -> None:
        if self.repository(tenancy, name) is None:
            raise unknown("repository", repository=f"{tenancy}/{name}")
        self._delete(("repo", tenancy, name))

    # Pull-through rules -----------------------------------------------------------------

    def create_rule(self, rule: PullThroughRule) -> PullThroughRule:
        """Store a new rule under a fresh ``id`` (its upstream key starts empty); returns it."""
        self.require_tenancy(rule.tenancy)
        validate_name(rule.prefix)
        if not is_rule_url(rule.url):
            raise RegistryError(ErrorCode.REQUEST_INVALID, "url: expected http(s)://host[:port]")
        if (rule.username is None) != (rule.password is None):
            raise RegistryError(ErrorCode.REQUEST_INVALID, "set username and password, or neither")
        with self._db.transact():
            if self.rule(rule.tenancy, rule.prefix) is not None:
                raise exists("rule", prefix=rule.prefix)
            if not rule.id:
                rule = replace(rule, id=new_token_id())
            self._put(("rule", rule.tenancy, rule.prefix), rule)
        return rule

    def rule(self, tenancy: str, prefix: str) -> PullThroughRule | None:
        return self._get(("rule", tenancy, prefix), PullThroughRule)

    def rules(self, tenancy: str) -> list[PullThroughRule]:
        return self._memoised(
            ("rules", tenancy), lambda: self._scan("rule", tenancy, PullThroughRule)
        )

    def rule_by_key(self, key: str) -> PullThroughRule | None:
        """The rule whose upstream key (``<tenancy>/<prefix>@<id>``) is ``key``; ``None`` for
        the key of a deleted rule, even when a rule of that prefix was created again."""
        name, _, _ = key.partition("@")
        tenancy, _, prefix = name.partition("/")
        found = self.rule(tenancy, prefix) if prefix else None
        return found if found is not None and found.key == key else None

    def delete_rule(self, tenancy: str, prefix: str) -> PullThroughRule:
        """Delete a rule; returns it (the caller forgets what is cached under its key)."""
        found = self.rule(tenancy, prefix)
        if found is None:
            raise unknown("rule", prefix=prefix)
        self._delete(("rule", tenancy, prefix))
        return found
