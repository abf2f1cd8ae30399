"""A single node's audit log is kept in bounds too: the server prunes the events older than
``retention.audit_keep_days`` from its ``audit.jsonl`` as it starts, and keeps them all with
``audit_keep_days = 0``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mirror.clock import ManualClock

from .conftest import MirrorFactory

pytestmark = pytest.mark.integration

DAY = 86400.0
NOW = ManualClock().now()  # where the mirrors' manual clocks start


def seed_audit(data_dir: Path) -> Path:
    """An audit file with an event 3 days old and one 1 day old."""
    path = data_dir / "retention" / "audit.jsonl"
    path.parent.mkdir(parents=True)
    lines = [{"ts": NOW - 3 * DAY, "event": "run", "run": "old"}]
    lines.append({"ts": NOW - DAY, "event": "run", "run": "recent"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def runs(path: Path) -> list[str]:
    return [json.loads(line)["run"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "keep_days, kept",
    [
        pytest.param(2, ["recent"], id="two-days"),
        pytest.param(0, ["old", "recent"], id="for-ever"),
    ],
)
async def test_the_server_prunes_its_audit_file_as_it_starts(
    mirror_factory: MirrorFactory, tmp_path: Path, keep_days: float, kept: list[str]
) -> None:
    data_dir = tmp_path / "node"
    path = seed_audit(data_dir)

    mirror = await mirror_factory(
        {"up.test": "http://127.0.0.1:9"},
        data_dir=data_dir,
        retention={"audit_keep_days": keep_days},
    )

    # The prune runs in the background from the start: give it its moment, boundedly.
    async with asyncio.timeout(10):
        while runs(path) != kept:  # noqa: ASYNC110 - a file has no event to wait on
            await asyncio.sleep(0.02)
    assert [e["run"] for e in mirror.retention.audit_events()] == kept
