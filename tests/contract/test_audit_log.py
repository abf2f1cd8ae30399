"""One contract every retention audit log keeps: a single node's (a JSON-lines file the server
and the CLI share) and a tier's (that file on each replica, and rows in PostgreSQL): what any
writer records, every reader reads, oldest first, and the local file keeps its own lines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirror.clock import ManualClock
from mirror.db.postgres.audit import PostgresAudit
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
