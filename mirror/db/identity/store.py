"""The identity store: tenancies, users, groups and auth tokens in an embedded diskcache
(SQLite) database of their own, with the tenancy resources of :class:`TenancyResources`.

Keys are tuples whose second element is the tenancy, so a tenancy's records are found and
deleted together.
"""

from __future__ import annotations

from dataclasses import replace

from mirror.crypto.secrets import DEFAULT_COST, hash_secret, new_token_id, new_token_secret
from mirror.db.identity.base import exists, unknown
from mirror.db.identity.records import (
    ADMINISTRATORS,
    MAX_ACTIVE_TOKENS,
    AuthToken,
    Group,
    PullThroughRule,
    Tenancy,
    User,
    format_token,
    group_name,
    tenancy_name,
    user_name,
)
from mirror.db.identity.resources import TenancyResources
from mirror.errors import ErrorCode, RegistryError


class IdentityStore(TenancyResources):
    """Tenancies and everything in them. One instance per process, closed explicitly."""

    # Tenancies --------------------------------------------------------------------------

    def create_tenancy(self, name: str, now: float) -> Tenancy:
        """A new tenancy with its (empty) administrators group."""
        tenancy_name(name)
        with self._db.transact():
            if self.tenancy(name) is not None:
                raise exists("tenancy", tenancy=name)
            record = Tenancy(name, now)
            self._put(("tenancy", name), record)
            self._put(("group", name, ADMINISTRATORS), Group(name, ADMINISTRATORS))
        return record

    def tenancies(self) -> list[Tenancy]:
        """Every tenancy, by name."""
        return sorted(
            (
                v
                for k in iter(self._db)
                if k[0] == "tenancy"
                if isinstance(v := self._db.get(k), Tenancy)
            ),
            key=lambda t: t.name,
        )

    def delete_tenancy(self, name: str) -> list[PullThroughRule]:
        """Delete a tenancy and everything in it (tokens included); returns its rules (the
        caller forgets what is cached under their keys)."""
        self.require_tenancy(name)
        rules = self.rules(name)
        with self._db.transact():
            for key in list(iter(self._db)):
                if isinstance(key, tuple) and len(key) > 1 and key[1] == name:
                    self._db.delete(key)
            for token in self._all_tokens():
                if token.tenancy == name:
                    self._db.delete(("token", token.id))
            self._delete(("tenancy", name))
        return rules

    # Users and groups -------------------------------------------------------------------

    def create_user(self, tenancy: str, name: str, now: float) -> User:
        """Create a user in ``tenancy``; ``RESOURCE_EXISTS`` if the name is taken."""
        self.require_tenancy(tenancy)
        user_name(name)
        with self._db.transact():
            if self.user(tenancy, name) is not None:
                raise exists("user", user=f"{tenancy}/{name}")
            record = User(tenancy, name, now)
            self._put(("user", tenancy, name), record)
        return record

    def user(self, tenancy: str, name: str) -> User | None:
        """The user, or ``None`` (memoised)."""
        return self._memoised(
            ("user", tenancy, name), lambda: self._get(("user", tenancy, name), User)
        )

    def require_user(self, tenancy: str, name: str) -> User:
        """The user; ``RESOURCE_UNKNOWN`` if there is none."""
        found = self.user(tenancy, name)
        if found is None:
            raise unknown("user", user=f"{tenancy}/{name}")
        return found

    def users(self, tenancy: str) -> list[User]:
        """The users of ``tenancy``, by name."""
        return self._scan("user", tenancy, User)

    def delete_user(self, tenancy: str, name: str) -> None:
        """Delete a user, its tokens and its group memberships."""
        self.require_user(tenancy, name)
        with self._db.transact():
            for token in self.tokens(tenancy, name):
                self._delete(("token", token.id))
            for group in self.groups(tenancy):
                if name in group.members:
                    members = tuple(m for m in group.members if m != name)
                    self._put(("group", tenancy, group.name), replace(group, members=members))
            self._delete(("user", tenancy, name))

    def create_group(self, tenancy: str, name: str) -> Group:
        """Create an empty group in ``tenancy``; ``RESOURCE_EXISTS`` if the name is taken."""
        self.require_tenancy(tenancy)
        group_name(name)
        with self._db.transact():
            if self.group(tenancy, name) is not None:
                raise exists("group", group=name)
            record = Group(tenancy, name)
            self._put(("group", tenancy, name), record)
        return record

    def group(self, tenancy: str, name: str) -> Group | None:
        """The group, or ``None``."""
        return self._get(("group", tenancy, name), Group)

    def require_group(self, tenancy: str, name: str) -> Group:
        """The group; ``RESOURCE_UNKNOWN`` if there is none."""
        found = self.group(tenancy, name)
        if found is None:
            raise unknown("group", group=name)
        return found

    def groups(self, tenancy: str) -> list[Group]:
        """The groups of ``tenancy``, by name."""
        return self._scan("group", tenancy, Group)

    def delete_group(self, tenancy: str, name: str) -> None:
        """Delete a group (never the administrators group); ``RESOURCE_UNKNOWN`` if there is
        none."""
        if name == ADMINISTRATORS:
            raise RegistryError(ErrorCode.REQUEST_INVALID, "the administrators group stays")
        self.require_group(tenancy, name)
        self._delete(("group", tenancy, name))

    def set_member(self, tenancy: str, group: str, user: str, member: bool) -> Group:
        """Add ``user`` to ``group`` (or remove it); idempotent."""
        with self._db.transact():
            record = self.require_group(tenancy, group)
            self.require_user(tenancy, user)
            members = set(record.members)
            (members.add if member else members.discard)(user)
            record = replace(record, members=tuple(sorted(members)))
            self._put(("group", tenancy, group), record)
        return record

    def groups_of(self, tenancy: str, user: str) -> frozenset[str]:
        """Names of the groups ``user`` belongs to."""
        return self._memoised(
            ("groups_of", tenancy, user),
            lambda: frozenset(g.name for g in self.groups(tenancy) if user in g.members),
        )

    # Auth tokens ------------------------------------------------------------------------

    def create_token(
        self, tenancy: str, user: str, description: str, now: float, cost: int = DEFAULT_COST
    ) -> tuple[AuthToken, str]:
        """A new token and its secret string, which is not kept and cannot be shown again."""
        self.require_user(tenancy, user)
        if len(description) > 256:
            raise RegistryError(ErrorCode.REQUEST_INVALID, "description: at most 256 characters")
        secret = new_token_secret()
        token = AuthToken(
            new_token_id(), tenancy, user, hash_secret(secret, cost), description, now
        )
        with self._db.transact():
            active = [t for t in self.tokens(tenancy, user) if t.active]
            if len(active) >= MAX_ACTIVE_TOKENS:
                raise RegistryError(
                    ErrorCode.LIMIT_EXCEEDED,
                    f"a user has at most {MAX_ACTIVE_TOKENS} active tokens: revoke one first",
                    detail={"active": [t.id for t in active]},
                )
            self._put(("token", token.id), token)
        return token, format_token(token.id, secret)

    def token(self, token_id: str) -> AuthToken | None:
        """The token record with ``token_id``, or ``None`` (memoised)."""
        return self._memoised(
            ("token", token_id), lambda: self._get(("token", token_id), AuthToken)
        )

    def _all_tokens(self) -> list[AuthToken]:
        return [
            value
            for key in iter(self._db)
            if isinstance(key, tuple) and key[0] == "token"
            if isinstance(value := self._db.get(key), AuthToken)
        ]

    def tokens(self, tenancy: str, user: str) -> list[AuthToken]:
        """The tokens of a user (active and revoked), oldest first."""
        found = [t for t in self._all_tokens() if (t.tenancy, t.user) == (tenancy, user)]
        return sorted(found, key=lambda t: (t.created_at, t.id))

    def revoke_token(self, tenancy: str, user: str, token_id: str, now: float) -> AuthToken:
        """Revoke one of the user's tokens; ``RESOURCE_UNKNOWN`` if it is not theirs."""
        token = self.token(token_id)
        if token is None or (token.tenancy, token.user) != (tenancy, user):
            raise unknown("token", token=token_id)
        if token.revoked_at is None:
            token = replace(token, revoked_at=now)
            self._put(("token", token_id), token)
        return token

    def touch_token(self, token_id: str, now: float, resolution: float = 60.0) -> None:
        """Record a use of the token (written at most once per ``resolution`` seconds)."""
        token = self.token(token_id)
        if token is not None and (token.last_used_at or 0.0) + resolution <= now:
            self._put(("token", token_id), replace(token, last_used_at=now))

    # Bootstrap --------------------------------------------------------------------------

    def bootstrapped(self) -> bool:
        """Whether the first start's bootstrap (admin tenancy, user, token) has run."""
        return bool(self._db.get(("bootstrap",)))

    def mark_bootstrapped(self) -> None:
        """Record that the bootstrap ran, so it never runs again."""
        self._put(("bootstrap",), True)
