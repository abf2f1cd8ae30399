"""Issue 14, the tier's audit log kept in bounds: a replica (a real ``mirror serve`` over
PostgreSQL) prunes the events older than ``retention.audit_keep_days`` from ``audit_events``
as it starts, and opens one pool for its audit log, shared by retention and the hosted copies
(its connections counted in ``pg_stat_activity`` by ``application_name``)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import asyncpg
import pytest

from mirror.db.postgres.migrate import migrate_database
from tests.integration.tier.test_tier_hosted import replica_config
from tests.peers.mirror_serve import MirrorServe
from tests.peers.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DAY = 86400.0


async def audit_connections(dsn: str) -> dict[str, int]:
    """The database's connections whose ``application_name`` is an audit log's pool, by name
    (one name per pool: ``mirror-audit-<random>``)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'mirror-audit-%' "
            "GROUP BY application_name"
        )
    finally:
        await connection.close()
    return {row[0]: row[1] for row in rows}


async def audit_rows(dsn: str) -> list[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT body->>'run' FROM audit_events ORDER BY at")
    finally:
        await connection.close()
    return [row[0] for row in rows]


async def add_event(dsn: str, at: float, run: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        body = json.dumps({"ts": at, "event": "run", "run": run})
        await connection.execute(
            "INSERT INTO audit_events (at, replica, body) VALUES ($1, 'other', $2::jsonb)",
            at,
            body,
        )
    finally:
        await connection.close()


def replica(tmp_path: Path, dsn: str) -> MirrorServe:
    """A hosted tier's replica over ``dsn`` (its peer is never started)."""
    port, peer = free_port(), free_port()
    urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"]
    secret = tmp_path / "tier.secret"
    secret.write_text(random.Random(5).randbytes(32).hex())
    base = tmp_path / "replica"
    return MirrorServe(base, replica_config(base, port, urls, secret, dsn), port)


async def test_a_replica_prunes_the_events_older_than_the_limit_as_it_starts(
    tmp_path: Path, postgres_dsn: str
) -> None:
    await migrate_database(postgres_dsn, None)
    now = time.time()
    await add_event(postgres_dsn, now - 401 * DAY, "older-than-400-days")
    await add_event(postgres_dsn, now - 399 * DAY, "younger")
    server = replica(tmp_path, postgres_dsn)
    await server.start()
    try:
        # The default keeps 400 days: the older row goes at start, the younger stays.
        async with asyncio.timeout(20):
            # The database has no event to wait on: it is asked again.
            while (rows := await audit_rows(postgres_dsn)) != ["younger"]:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert rows == ["younger"]
    finally:
        await server.stop()


async def test_a_replica_opens_one_pool_for_its_audit_log(
    tmp_path: Path, postgres_dsn: str
) -> None:
    server = replica(tmp_path, postgres_dsn)
    await server.start()
    try:
        pools = await audit_connections(postgres_dsn)
    finally:
        await server.stop()

    # One pool, retention's and the hosted copies' log alike, of one idle connection (the
    # pool's minimum); it closes with the replica.
    assert list(pools.values()) == [1], (pools, server.log())
    assert await audit_connections(postgres_dsn) == {}
