"""One contract every retention audit log keeps: a single node's (a JSON-lines file the server
and the CLI share) and a tier's (that file on each replica, and rows in PostgreSQL): what any
writer records, every reader reads, oldest first, and the local file keeps its own lines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest

from mirror.clock import ManualClock
from mirror.db.postgres.audit import PRUNE_LOCK, PostgresAudit
from mirror.db.postgres.connect import PostgresSettings
from mirror.db.postgres.migrate import migrate_database
from mirror.db.postgres.shared import SharedDatabase
from mirror.retention.audit import AuditLog

# ``open_log(i)``: the audit log of replica ``i`` (one file for every ``i`` on a single node).
Opener = Callable[[int], AuditLog]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["file", "postgres"])
def open_log(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[Opener]:
    opened: list[AuditLog] = []
    dsn = ""
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        asyncio.run(migrate_database(dsn, None))

    def make(replica: int) -> AuditLog:
        if not dsn:
            log = AuditLog(tmp_path / "audit.jsonl", clock)
        else:
            shared = PostgresAudit(
                SharedDatabase.open(PostgresSettings(dsn), "audit"), f"r{replica}"
            )
            log = AuditLog(tmp_path / f"r{replica}" / "audit.jsonl", clock, shared)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def test_events_written_by_any_writer_are_read_by_every_reader_oldest_first(
    open_log: Opener, clock: ManualClock
) -> None:
    a, b = open_log(0), open_log(1)
    a.write("run", run="r1", trigger="api")
    clock.advance(1)
    b.write("evict-image", run="r2", repository="h/app", digest="sha256:" + "a" * 64)
    clock.advance(1)
    a.write("delete-blob", run="r2", digest="sha256:" + "b" * 64, reason="released")

    for log in (a, b):
        events = log.read()
        assert [e["event"] for e in events] == ["run", "evict-image", "delete-blob"]
        assert events[1]["repository"] == "h/app" and events[1]["time"].endswith("Z")
        assert events[0]["ts"] < events[1]["ts"] < events[2]["ts"]


def test_each_writer_keeps_its_own_lines_in_its_file(open_log: Opener) -> None:
    a, b = open_log(0), open_log(1)
    a.write("run", run="r1")
    b.write("run", run="r2")
    lines = [json.loads(line) for line in a.path.read_text().splitlines()]
    assert "r1" in [e["run"] for e in lines]


def test_on_a_tier_each_event_names_the_replica_that_acted(
    open_log: Opener, request: pytest.FixtureRequest
) -> None:
    if "postgres" not in request.node.callspec.id:
        pytest.skip("one node has no other replica")
    open_log(0).write("run", run="r1")
    open_log(1).write("run", run="r2")
    assert [(e["run"], e["replica"]) for e in open_log(2).read()] == [("r1", "r0"), ("r2", "r1")]


DAY = 86400.0


def test_a_prune_drops_the_events_older_than_the_limit_and_keeps_the_newer(
    open_log: Opener, clock: ManualClock
) -> None:
    a, b = open_log(0), open_log(1)
    a.write("run", run="old-a")
    b.write("run", run="old-b")
    clock.advance(10 * DAY)
    cutoff = clock.now()
    a.write("run", run="new-a")
    b.write("run", run="new-b")

    dropped = a.prune(cutoff)

    assert dropped >= 2  # on a tier, a's file line and both rows
    for log in (a, b):
        assert [e["run"] for e in log.read()] == ["new-a", "new-b"]
    # a's own file lost its old line and kept its new one; the next write still lands.
    a.write("run", run="after")
    own = [json.loads(line)["run"] for line in a.path.read_text().splitlines()]
    assert "old-a" not in own and own[0] == "new-a" and own[-1] == "after"
    assert a.prune(cutoff) == 0  # nothing left to drop


def test_a_prune_of_a_log_with_nothing_old_leaves_it_as_it_was(
    open_log: Opener, clock: ManualClock
) -> None:
    a = open_log(0)
    assert a.prune(clock.now()) == 0  # no file yet
    a.write("run", run="r1")
    before = a.path.read_bytes()
    assert a.prune(clock.now() - 1) == 0
    assert a.path.read_bytes() == before
    assert not a.path.with_name(a.path.name + ".pruning").exists()


# The tier's table alone: pruning in batches, one replica at a time --------------------------


async def seed(dsn: str, old: int, new: int) -> None:
    """``old`` events at ts 1..old and ``new`` at 10_000.., written straight into the table."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO audit_events (at, replica, body) SELECT g, 'seed', "
            "jsonb_build_object('ts', g, 'event', 'run') FROM generate_series(1, $1) g",
            old,
        )
        await connection.execute(
            "INSERT INTO audit_events (at, replica, body) SELECT g, 'seed', "
            "jsonb_build_object('ts', g, 'event', 'run') "
            "FROM generate_series(10000, 9999 + $1) g",
            new,
        )
    finally:
        await connection.close()


@pytest.fixture
def tier_dsn(postgres_dsn: str) -> str:
    asyncio.run(migrate_database(postgres_dsn, None))
    return postgres_dsn


def shared_audits(dsn: str, count: int) -> list[PostgresAudit]:
    return [
        PostgresAudit(SharedDatabase.open(PostgresSettings(dsn), "audit"), f"r{i}")
        for i in range(count)
    ]


def test_two_replicas_pruning_at_once_both_finish_and_every_old_row_goes(tier_dsn: str) -> None:
    asyncio.run(seed(tier_dsn, old=3000, new=50))
    audits = shared_audits(tier_dsn, 2)
    try:
        with ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(lambda audit: audit.prune(5000.0, batch=100), audits))
        remaining = audits[0].read()
    finally:
        for audit in audits:
            audit.close()

    # Neither failed; between them they deleted each old row once (batches of 100 under the
    # pruning lock: a replica that finds it taken stops, the holder goes on).
    assert sum(counts) == 3000
    assert [e["ts"] for e in remaining] == list(range(10000, 10050))


def test_a_replica_finding_the_pruning_lock_taken_leaves_the_rows_to_its_holder(
    tier_dsn: str,
) -> None:
    asyncio.run(seed(tier_dsn, old=10, new=0))

    async def prune_while_held() -> int:
        holder = await asyncpg.connect(tier_dsn)
        try:
            async with holder.transaction():
                await holder.execute("SELECT pg_advisory_xact_lock($1)", PRUNE_LOCK)
                return await asyncio.to_thread(audit.prune, 5000.0)
        finally:
            await holder.close()

    (audit,) = shared_audits(tier_dsn, 1)
    try:
        assert asyncio.run(prune_while_held()) == 0  # did not wait for the holder
        assert len(audit.read()) == 10
        assert audit.prune(5000.0) == 10  # once free, the lock is this replica's
        assert audit.read() == []
    finally:
        audit.close()
