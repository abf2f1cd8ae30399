"""One contract every hosted quota book keeps: a single node's (``Quotas``, in memory) and a
tier's (``TierQuotas``, in PostgreSQL). A "replica" here is the quotas and the metadata store
of one process; on a single node every replica is the node, on a tier each is its own process
sharing the database, so what one admits, links or sets is what every other one sees.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirror.clock import ManualClock
from mirror.db.metadata import Metadata
from mirror.db.postgres.connect import PostgresSettings
from mirror.db.postgres.metadata import PostgresMetadata
from mirror.db.postgres.quota import PostgresQuotaRecords
from mirror.db.postgres.shared import SharedDatabase
from mirror.db.roles import MetadataStore
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.names import hosted_key
from mirror.hosted.quota import Limits, Quotas, TenancyQuotas
from mirror.hosted.tier_quota import TierQuotas
from mirror.oci.digest import Digest

TIMEOUT = 600.0
UNLIMITED = Limits()


def digest(n: int) -> Digest:
    return Digest.parse(f"sha256:{n:064x}")


@dataclass
class Replica:
    """One process's view: its quotas and its metadata store."""

    quotas: TenancyQuotas
    metadata: MetadataStore

    def push(self, tenancy: str, repo: str, object_: Digest, size: int) -> None:
        """What an upload's completion does: reserve, store (elsewhere), link, commit."""
        with self.quotas.reserve(tenancy, repo, object_, size) as held:
            self.metadata.link(hosted_key(tenancy), repo, [object_])
            held.commit(repo, object_)

    def delete(self, tenancy: str, repo: str, object_: Digest) -> None:
        """What a DELETE of a blob does: drop the link, tell the quotas."""
        assert self.metadata.drop_link(hosted_key(tenancy), repo, object_)
        self.quotas.unlinked(tenancy, repo, object_)


Opener = Callable[..., Replica]


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def open_replica(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[Opener]:
    """``open_replica(i, default=Limits(...))``: replica ``i``'s view (the node, on one)."""
    opened: dict[int, Replica] = {}
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else ""

    def make(index: int, default: Limits = UNLIMITED) -> Replica:
        if backend == "memory":
            index = 0
        if index in opened:
            return opened[index]
        if backend == "memory":
            quotas: TenancyQuotas = Quotas(default, tmp_path / "hosted-quotas.json")
            replica = Replica(quotas, Metadata(tmp_path / "metadata"))
        else:
            metadata = PostgresMetadata.open(PostgresSettings(dsn), tmp_path / f"r{index}")
            records = PostgresQuotaRecords(SharedDatabase.open(PostgresSettings(dsn), "quotas"))
            replica = Replica(TierQuotas(default, records, clock, timeout=TIMEOUT), metadata)
        opened[index] = replica
        return replica

    yield make
    for replica in opened.values():
        replica.quotas.close()
        replica.metadata.close()


def refusal(call: Callable[[], object]) -> dict[str, object]:
    """The detail of the 403 ``DENIED`` ``call`` raises."""
    with pytest.raises(RegistryError) as caught:
        call()
    assert caught.value.code is ErrorCode.DENIED
    detail = caught.value.detail
    assert isinstance(detail, dict)
    return detail


def test_usage_pushed_at_one_replica_is_read_at_every_replica(open_replica: Opener) -> None:
    a, b = open_replica(0), open_replica(1)
    a.push("acme", "app", digest(1), 100)
    a.push("acme", "app", digest(2), 50)
    # The same object in a second repository of the tenancy is stored (and counted) once.
    b.push("acme", "tools", digest(1), 100)
    b.push("other", "app", digest(1), 100)

    for replica in (a, b):
        acme = replica.quotas.usage("acme")
        assert (acme.bytes, acme.repositories) == (150, 2)
        assert replica.quotas.usage("other").bytes == 100
        assert {"acme", "other"} <= set(replica.quotas.tenancies())


def test_a_push_over_the_byte_limit_is_refused_naming_use_and_limit(open_replica: Opener) -> None:
    a = open_replica(0, default=Limits(bytes=1_000))
    b = open_replica(1, default=Limits(bytes=1_000))
    a.push("acme", "app", digest(1), 600)

    detail = refusal(lambda: b.quotas.reserve("acme", "app", digest(2), 500))
    assert detail == {
        "tenancy": "acme",
        "quota": "bytes",
        "used": 600,
        "adding": 500,
        "limit": 1000,
    }
    # Refused, nothing is held: what fits still fits, at either replica.
    b.push("acme", "app", digest(3), 400)
    assert a.quotas.usage("acme").bytes == 1_000
    # An object the tenancy stores already adds nothing, even at the limit.
    a.push("acme", "other-repo", digest(1), 600)
    assert b.quotas.usage("acme").bytes == 1_000


def test_bytes_reserved_at_one_replica_count_at_another_until_released(
    open_replica: Opener,
) -> None:
    a = open_replica(0, default=Limits(bytes=1_000))
    b = open_replica(1, default=Limits(bytes=1_000))
    held = a.quotas.reserve("acme", "app", digest(1), 800)

    detail = refusal(lambda: b.quotas.reserve("acme", "app", digest(2), 300))
    assert (detail["used"], detail["adding"]) == (800, 300)
    held.release()
    b.push("acme", "app", digest(2), 300)
    assert a.quotas.usage("acme").bytes == 300


def test_a_reservation_left_by_an_exception_is_given_back(open_replica: Opener) -> None:
    a = open_replica(0, default=Limits(bytes=1_000))
    with pytest.raises(OSError), a.quotas.reserve("acme", "app", digest(1), 900):
        raise OSError("the disk failed while installing the upload")
    open_replica(1, default=Limits(bytes=1_000)).push("acme", "app", digest(2), 900)


def test_a_linked_object_whose_reservation_is_not_yet_committed_counts_once(
    open_replica: Opener,
) -> None:
    a = open_replica(0, default=Limits(bytes=1_000))
    b = open_replica(1, default=Limits(bytes=1_000))
    held = a.quotas.reserve("acme", "app", digest(1), 500)
    a.metadata.link(hosted_key("acme"), "app", [digest(1)])
    # Between the link and the commit the 500 bytes are not counted twice: 500 more fit.
    b.push("acme", "app", digest(2), 500)
    held.commit("app", digest(1))
    assert b.quotas.usage("acme").bytes == 1_000


def test_deleting_at_one_replica_frees_the_bytes_for_every_replica(open_replica: Opener) -> None:
    a = open_replica(0, default=Limits(bytes=1_000))
    b = open_replica(1, default=Limits(bytes=1_000))
    a.push("acme", "app", digest(1), 700)
    a.push("acme", "tools", digest(1), 700)

    b.delete("acme", "app", digest(1))
    assert a.quotas.usage("acme").bytes == 700  # tools still links it
    b.delete("acme", "tools", digest(1))
    assert a.quotas.usage("acme").bytes == 0
    a.push("acme", "app", digest(2), 1_000)


def test_limits_set_at_one_replica_govern_every_replica(open_replica: Opener) -> None:
    a = open_replica(0, default=Limits(bytes=1_000, repositories=5))
    b = open_replica(1, default=Limits(bytes=1_000, repositories=5))
    assert a.quotas.set_limits("acme", Limits(bytes=100, repositories=None)) == Limits(100, None)

    assert b.quotas.limits("acme") == Limits(100, None)
    assert b.quotas.usage("acme").limits == Limits(100, None)
    assert b.quotas.limits("other") == Limits(1_000, 5)
    assert refusal(lambda: b.quotas.reserve("acme", "app", digest(1), 101))["limit"] == 100
    assert "acme" in b.quotas.tenancies()

    assert b.quotas.set_limits("acme", None) == Limits(1_000, 5)
    assert a.quotas.limits("acme") == Limits(1_000, 5)


def test_repositories_admitted_anywhere_count_against_the_repository_limit(
    open_replica: Opener,
) -> None:
    a = open_replica(0, default=Limits(repositories=2))
    b = open_replica(1, default=Limits(repositories=2))
    a.quotas.admit_repository("acme", "one")
    b.push("acme", "two", digest(1), 10)
    # A repository already counted is admitted again; a third is refused.
    a.quotas.admit_repository("acme", "one")
    b.push("acme", "two", digest(2), 10)
    detail = refusal(lambda: a.quotas.reserve("acme", "three", digest(3), 10))
    assert detail == {
        "tenancy": "acme",
        "quota": "repositories",
        "used": 2,
        "adding": 1,
        "limit": 2,
    }
    assert refusal(lambda: b.quotas.admit_repository("acme", "three"))["used"] == 2

    a.quotas.forget_repository("acme", "one")
    b.quotas.admit_repository("acme", "three")
    assert a.quotas.usage("acme").repositories == 2


def test_a_deleted_tenancy_starts_again_empty_with_the_default(open_replica: Opener) -> None:
    a = open_replica(0, default=Limits(bytes=1_000))
    b = open_replica(1, default=Limits(bytes=1_000))
    a.quotas.set_limits("acme", Limits(bytes=10))
    a.quotas.admit_repository("acme", "app")
    b.quotas.forget_tenancy("acme")

    assert a.quotas.limits("acme") == Limits(bytes=1_000)
    assert a.quotas.usage("acme").repositories == 0


@pytest.fixture
def tier(backend: str, open_replica: Opener) -> Opener:
    if backend != "postgres":
        pytest.skip("replicas are separate processes only on a tier")
    return open_replica


def test_concurrent_admissions_at_three_replicas_admit_exactly_what_fits(tier: Opener) -> None:
    replicas = [tier(i, default=Limits(bytes=10 * 100)) for i in range(3)]
    admitted: list[Digest] = []
    refused: list[Digest] = []
    start = threading.Barrier(len(replicas))

    def push(replica: Replica, first: int) -> None:
        start.wait()
        for n in range(first, first + 8):
            try:
                replica.push("acme", "app", digest(n), 100)
                admitted.append(digest(n))
            except RegistryError:
                refused.append(digest(n))

    threads = [threading.Thread(target=push, args=(r, 100 * i)) for i, r in enumerate(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(admitted), len(refused)) == (10, 14)
    assert {r.quotas.usage("acme").bytes for r in replicas} == {1_000}


def test_the_reservations_of_a_replica_that_is_gone_stop_counting(
    tier: Opener, clock: ManualClock
) -> None:
    a = tier(0, default=Limits(bytes=1_000))
    b = tier(1, default=Limits(bytes=1_000))
    a.quotas.reserve("acme", "app", digest(1), 900)
    refusal(lambda: b.quotas.reserve("acme", "app", digest(2), 900))
    # A's process ends with the reservation held: its connections close (the server sees
    # them go a moment later).
    a.quotas.close()
    for _ in range(50):
        try:
            b.push("acme", "app", digest(2), 900)
            break
        except RegistryError:
            time.sleep(0.1)
    assert b.quotas.usage("acme").bytes == 900


def test_a_reservation_nobody_freed_lapses_after_the_timeout(
    tier: Opener, clock: ManualClock
) -> None:
    a = tier(0, default=Limits(bytes=1_000))
    b = tier(1, default=Limits(bytes=1_000))
    a.quotas.reserve("acme", "app", digest(1), 900)
    clock.advance(TIMEOUT - 1)
    refusal(lambda: b.quotas.reserve("acme", "app", digest(2), 900))
    clock.advance(1)
    b.push("acme", "app", digest(2), 900)


async def test_content_linked_before_the_tier_counted_it_is_sized_by_its_holder(
    tier: Opener,
) -> None:
    a, b = tier(0), tier(1)
    # Links without a recorded size (pushed before migration 0006): each replica sizes
    # what it holds when it loads, and the count is then the tier's.
    a.metadata.link(hosted_key("acme"), "app", [digest(1), digest(2)])
    assert b.quotas.usage("acme").bytes == 0
    held_by_a = {digest(1): 300}
    held_by_b = {digest(2): 200}

    async def stat_a(d: Digest) -> int | None:
        return held_by_a.get(d)

    async def stat_b(d: Digest) -> int | None:
        return held_by_b.get(d)

    await a.quotas.load(lambda: (), stat_a)
    assert b.quotas.usage("acme").bytes == 300
    await b.quotas.load(lambda: (), stat_b)
    assert a.quotas.usage("acme").bytes == 500
