"""One contract every identity store keeps: the embedded diskcache one of a single node and
the PostgreSQL one a regional tier shares answer these the same way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirror.crypto.secrets import verify_secret
from mirror.db.identity.records import (
    ADMINISTRATORS,
    AccessPolicy,
    PullThroughRule,
    split_token,
)
from mirror.db.identity.store import IdentityStore
from mirror.db.postgres.connect import PostgresSettings
from mirror.db.postgres.identity import PostgresRecords
from mirror.db.postgres.migrate import migrate_database
from mirror.db.postgres.shared import SharedDatabase
from mirror.errors import ErrorCode, RegistryError

COST = 2  # the cheapest scrypt: these tests check bookkeeping, not hashing

Opener = Callable[[], IdentityStore]


def open_postgres(dsn: str) -> IdentityStore:
    """An identity store over the tier's database ``dsn`` (already migrated)."""
    database = SharedDatabase.open(PostgresSettings(dsn), "identity")
    return IdentityStore(records=PostgresRecords.open(database))


@pytest.fixture(params=["diskcache", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens (and reopens) one store of the backend under test; all are closed at the end."""
    opened: list[IdentityStore] = []
    if request.param == "diskcache":

        def make() -> IdentityStore:
            return IdentityStore(tmp_path / "identity")
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        asyncio.run(migrate_database(dsn, None))

        def make() -> IdentityStore:
            return open_postgres(dsn)

    def opener() -> IdentityStore:
        store = make()
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Opener) -> IdentityStore:
    return open_store()


def test_a_tenancy_is_created_once_with_its_administrators_group(store: IdentityStore) -> None:
    created = store.create_tenancy("acme", 10.0)
    assert store.tenancy("acme") == created
    assert [g.name for g in store.groups("acme")] == [ADMINISTRATORS]
    with pytest.raises(RegistryError) as exc:
        store.create_tenancy("acme", 11.0)
    assert exc.value.code is ErrorCode.RESOURCE_EXISTS
    assert store.tenancy("nobody") is None
    assert [t.name for t in store.tenancies()] == ["acme"]


def test_users_and_groups_read_back_and_membership_follows_deletion(store: IdentityStore) -> None:
    store.create_tenancy("acme", 1.0)
    store.create_user("acme", "alice", 2.0)
    store.create_user("acme", "bob", 3.0)
    store.create_group("acme", "devs")
    store.set_member("acme", "devs", "alice", True)
    store.set_member("acme", "devs", "bob", True)
    assert store.groups_of("acme", "alice") == frozenset({"devs"})
    assert [u.name for u in store.users("acme")] == ["alice", "bob"]
    store.delete_user("acme", "alice")
    assert store.user("acme", "alice") is None
    assert store.require_group("acme", "devs").members == ("bob",)
    assert store.groups_of("acme", "alice") == frozenset()


def test_a_token_verifies_is_limited_revoked_and_touched(store: IdentityStore) -> None:
    store.create_tenancy("acme", 1.0)
    store.create_user("acme", "alice", 2.0)
    token, text = store.create_token("acme", "alice", "ci", 5.0, cost=COST)
    parts = split_token(text)
    assert parts is not None and parts[0] == token.id
    stored = store.token(token.id)
    assert stored == token and verify_secret(parts[1], stored.hash)
    store.create_token("acme", "alice", "laptop", 6.0, cost=COST)
    with pytest.raises(RegistryError) as exc:
        store.create_token("acme", "alice", "third", 7.0, cost=COST)
    assert exc.value.code is ErrorCode.LIMIT_EXCEEDED
    revoked = store.revoke_token("acme", "alice", token.id, 8.0)
    assert revoked.revoked_at == 8.0 and not revoked.active
    store.touch_token(token.id, 100.0)
    assert store.token(token.id) is not None
    assert store.token(token.id).last_used_at == 100.0  # type: ignore[union-attr]
    assert [t.description for t in store.tokens("acme", "alice")] == ["ci", "laptop"]


def test_policies_repositories_and_rules_read_back(store: IdentityStore) -> None:
    store.create_tenancy("acme", 1.0)
    policy = store.set_policy("acme", "readers", ("allow group devs to manage repos in tenancy",))
    assert store.policies("acme") == [policy] and isinstance(policy, AccessPolicy)
    assert len(store.statements("acme")) == 1
    repo = store.create_repository("acme", "app", 3.0)
    assert store.create_repository("acme", "app", 4.0, exist_ok=True) == repo
    assert store.set_public("acme", "app", True).public
    rule = store.create_rule(
        PullThroughRule("acme", "hub", "https://registry-1.docker.io", "u", "p", 5.0)
    )
    assert store.rule("acme", "hub") == rule and store.rule_by_key(rule.key) == rule
    assert store.rule_password(rule) == "p"
    assert store.rules("acme") == [rule]


def test_deleting_a_tenancy_deletes_everything_in_it(store: IdentityStore) -> None:
    for name in ("acme", "other"):
        store.create_tenancy(name, 1.0)
        store.create_user(name, "alice", 2.0)
    token, _ = store.create_token("acme", "alice", "", 3.0, cost=COST)
    kept, _ = store.create_token("other", "alice", "", 3.0, cost=COST)
    store.delete_tenancy("acme")
    assert store.tenancy("acme") is None and store.user("acme", "alice") is None
    assert store.token(token.id) is None and store.token(kept.id) == kept
    assert all(key[1:2] != ("acme",) for key in store.keys() if key[0] != "token")


def test_records_survive_reopening_and_bootstrap_is_remembered(open_store: Opener) -> None:
    first = open_store()
    first.create_tenancy("acme", 1.0)
    assert not first.bootstrapped()
    first.mark_bootstrapped()
    first.close()
    again = open_store()
    assert again.tenancy("acme") is not None and again.bootstrapped()


def test_a_revocation_at_one_replica_is_seen_at_another_despite_its_memo(
    postgres_dsn: str,
) -> None:
    asyncio.run(migrate_database(postgres_dsn, None))
    a, b = open_postgres(postgres_dsn), open_postgres(postgres_dsn)
    try:
        a.create_tenancy("acme", 1.0)
        a.create_user("acme", "alice", 2.0)
        token, _ = a.create_token("acme", "alice", "", 3.0, cost=COST)
        assert b.token(token.id) == token  # B memoises it
        assert b.token(token.id) == token
        a.revoke_token("acme", "alice", token.id, 4.0)
        deadline = time.monotonic() + 5.0
        while b.token(token.id) == token and time.monotonic() < deadline:
            time.sleep(0.02)
        seen = b.token(token.id)
        assert seen is not None and not seen.active
    finally:
        a.close()
        b.close()
