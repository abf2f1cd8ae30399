"""One contract every retention store keeps: a single node's (diskcache) and a tier's (the
policies in PostgreSQL, the deferred blobs on each replica) answer these the same way. Two
stores opened here are the server and the offline command of one node, or two replicas."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirror.db.postgres.connect import PostgresSettings
from mirror.db.postgres.migrate import migrate_database
from mirror.db.postgres.retention import PostgresRetention
from mirror.db.postgres.shared import SharedDatabase
from mirror.db.retention import RetentionStore
from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.retention.policy import GLOBAL, RetentionPolicy, parse_edit

T0 = 1_000.0
REPO = "registry.test/team/app"
BLOB = Digest.parse("sha256:" + "ab" * 32)

# ``open_replica(i)``: the store of replica ``i`` (on a single node, every ``i`` is the node).
Opener = Callable[[int], RetentionStore]


@pytest.fixture(params=["diskcache", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_replica(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[RetentionStore] = []
    dsn = ""
    if backend == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        asyncio.run(migrate_database(dsn, None))

    def make(replica: int) -> RetentionStore:
        if backend == "diskcache":
            store = RetentionStore(tmp_path / "retention")
        else:
            database = SharedDatabase.open(PostgresSettings(dsn), "retention")
            directory = tmp_path / f"replica-{replica}" / "retention"
            store = RetentionStore(directory, shared=PostgresRetention(database))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def code_of(call: Callable[[], object]) -> ErrorCode:
    with pytest.raises(RegistryError) as caught:
        call()
    return caught.value.code


def test_a_policy_created_at_one_store_governs_its_repository_at_the_other(
    open_replica: Opener,
) -> None:
    a, c = open_replica(0), open_replica(2)
    a.create(RetentionPolicy("team", not_pulled_days=30, exempt_tags=("v*",)), T0)
    a.attach("team", REPO, T0 + 5)

    policy, since = c.state().governing(REPO)
    assert (policy.name, policy.not_pulled_days, policy.exempt_tags) == ("team", 30, ("v*",))
    assert since == T0 + 5
    assert c.state().repositories("team") == (REPO,)
    assert c.state().governing("registry.test/other")[0].name == GLOBAL


def test_edits_deletes_and_refusals_are_the_same_on_every_store(open_replica: Opener) -> None:
    a, b = open_replica(0), open_replica(1)
    a.create(RetentionPolicy("team", not_pulled_days=30), T0)
    a.create(RetentionPolicy("other", not_tagged_days=7), T0)
    b.attach("team", REPO, T0)

    assert code_of(lambda: b.create(RetentionPolicy("team"), T0)) is ErrorCode.POLICY_CONFLICT
    assert code_of(lambda: a.attach("other", REPO, T0)) is ErrorCode.POLICY_CONFLICT
    assert code_of(lambda: a.delete(GLOBAL, T0)) is ErrorCode.POLICY_CONFLICT
    assert code_of(lambda: b.edit("nope", parse_edit({}), T0)) is ErrorCode.POLICY_UNKNOWN

    widened = b.edit("team", parse_edit({"not_pulled_days": 10}), T0 + 50)
    assert widened.widened_at == T0 + 50
    assert a.state().policy("team").not_pulled_days == 10
    a.delete("team", T0 + 60)
    attachment = b.state().attachment(REPO)
    assert attachment is not None and (attachment.policy, attachment.since) == (GLOBAL, T0 + 60)


def test_concurrent_attachments_from_two_stores_are_all_kept(open_replica: Opener) -> None:
    a, b = open_replica(0), open_replica(1)
    a.create(RetentionPolicy("team", not_pulled_days=30), T0)
    repos = [f"registry.test/r{i}" for i in range(20)]

    def attach(store: RetentionStore, names: list[str]) -> None:
        for name in names:
            store.attach("team", name, T0)

    threads = [
        threading.Thread(target=attach, args=(a, repos[::2])),
        threading.Thread(target=attach, args=(b, repos[1::2])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert a.state().repositories("team") == tuple(sorted(repos))


def test_unreferenced_hosted_links_are_shared_and_round_trip(open_replica: Opener) -> None:
    a, b = open_replica(0), open_replica(1)
    found = {("hosted/acme", "app", BLOB): T0}
    a.set_unreferenced(found)
    assert b.unreferenced() == found
    b.set_unreferenced({})
    assert a.unreferenced() == {}


def test_deferred_blobs_are_the_replica_s_own(backend: str, open_replica: Opener) -> None:
    a, b = open_replica(0), open_replica(1)
    a.set_deferred({BLOB: T0})
    assert a.deferred() == {BLOB: T0}
    # A tier's replicas each hold their own blobs; a node's stores are one.
    assert b.deferred() == ({} if backend == "postgres" else {BLOB: T0})


def test_one_run_at_a_time_across_a_tier(backend: str, open_replica: Opener) -> None:
    a, b = open_replica(0), open_replica(1)
    assert a.begin_run()
    # A node's runs are serialised by its service; a tier's by the shared lock.
    assert b.begin_run() is (backend == "diskcache")
    if backend == "diskcache":
        b.end_run()
    a.end_run()
    assert b.begin_run()
    assert a.begin_run() is (backend == "diskcache")


def test_a_replica_that_closes_mid_run_frees_the_tier(backend: str, open_replica: Opener) -> None:
    a, b = open_replica(0), open_replica(1)
    assert a.begin_run()
    a.close()
    assert b.begin_run()
    b.end_run()


def test_what_a_run_releases_reaches_every_other_replica_once(
    backend: str, open_replica: Opener
) -> None:
    a, b = open_replica(0), open_replica(1)
    a.release({BLOB: T0}, T0)
    # A tier's replica reads what another's run released with its own deferred blobs, until
    # it saved its deferred blobs; a single node's run deleted what it held itself.
    expected = {BLOB: T0} if backend == "postgres" else {}
    assert b.deferred() == expected
    assert b.deferred() == expected
    b.set_deferred({})
    assert b.deferred() == {}
