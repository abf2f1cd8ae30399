"""Tenancy resources in the identity database: policies, repositories, pull-through rules."""

from __future__ import annotations

import logging
from dataclasses import replace

from yarl import URL

from mirror.auth.policy.grammar import PolicyError, Statement, parse_statements
from mirror.crypto.keys import KeyringError
from mirror.crypto.sealed import SecretSealer
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

log = logging.getLogger(__name__)


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
    """Policies (parsed when saved: all statements or none), repositories and rules.

    With a ``sealer`` (the keyring; set by the app when encryption is on) rule passwords are
    stored sealed; without one they are stored in plain text, with a warning.
    """

    sealer: SecretSealer | None = None

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
        """The access policies of ``tenancy``, by name."""
        return self._scan("policy", tenancy, AccessPolicy)

    def delete_policy(self, tenancy: str, name: str) -> None:
        """Delete a policy; ``RESOURCE_UNKNOWN`` if there is none."""
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
        """Create a repository record (private unless ``public``); ``RESOURCE_EXISTS`` unless
        ``exist_ok``."""
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
        """The repository record, or ``None`` (memoised)."""
        return self._memoised(
            ("repo", tenancy, name), lambda: self._get(("repo", tenancy, name), Repository)
        )

    def repositories(self, tenancy: str) -> list[Repository]:
        """The repository records of ``tenancy``, by name."""
        return self._scan("repo", tenancy, Repository)

    def set_public(self, tenancy: str, name: str, public: bool) -> Repository:
        """Make a repository public or private; ``RESOURCE_UNKNOWN`` if there is none."""
        record = self.repository(tenancy, name)
        if record is None:
            raise unknown("repository", repository=f"{tenancy}/{name}")
        record = replace(record, public=public)
        self._put(("repo", tenancy, name), record)
        return record

    def delete_repository(self, tenancy: str, name: str) -> None:
        """Delete a repository record; ``RESOURCE_UNKNOWN`` if there is none."""
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
        # The id first: the sealed password is bound to the rule's key, which includes it.
        if not rule.id:
            rule = replace(rule, id=new_token_id())
        rule = self._sealed(rule)
        with self._db.transact():
            if self.rule(rule.tenancy, rule.prefix) is not None:
                raise exists("rule", prefix=rule.prefix)
            self._put(("rule", rule.tenancy, rule.prefix), rule)
        return rule

    def _sealed(self, rule: PullThroughRule) -> PullThroughRule:
        """``rule`` with its plain-text password sealed (unchanged without a sealer)."""
        if rule.password is None:
            return rule
        if self.sealer is None:
            log.warning(
                "rule %s: upstream password stored in plain text (encryption is off)", rule.key
            )
            return rule
        return replace(
            rule, password=None, sealed_password=self.sealer.seal(rule.password, rule.key)
        )

    def rule_password(self, rule: PullThroughRule) -> str | None:
        """The rule's upstream password in plain text; ``KeyringError`` if it cannot be opened."""
        if rule.sealed_password is None:
            return rule.password
        if self.sealer is None:
            raise KeyringError(f"rule {rule.key}: its password is sealed and no keyring is loaded")
        return self.sealer.open(rule.sealed_password, rule.key)

    def seal_rule_passwords(self, tenancies: list[str]) -> int:
        """Seal the plain-text passwords of the rules of ``tenancies`` (records stored before
        sealing) and re-seal those sealed with an older KEK; returns how many were written.
        Nothing happens without a sealer."""
        sealer = self.sealer
        if sealer is None:
            return 0
        count = 0
        for tenancy in tenancies:
            for rule in self.rules(tenancy):
                sealed = rule.sealed_password
                if sealed is not None and not sealer.is_current(sealed):
                    rule = replace(rule, password=self.rule_password(rule), sealed_password=None)
                if rule.password is not None:
                    self._put(("rule", rule.tenancy, rule.prefix), self._sealed(rule))
                    count += 1
        return count

    def rule(self, tenancy: str, prefix: str) -> PullThroughRule | None:
        """The rule of ``tenancy`` with ``prefix``, or ``None``."""
        return self._get(("rule", tenancy, prefix), PullThroughRule)

    def rules(self, tenancy: str) -> list[PullThroughRule]:
        """The rules of ``tenancy``, by prefix (memoised)."""
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
