"""The single node's audit file is pruned like the tier's table: a prune rewrites it without
the events older than the limit, and a writer appending meanwhile loses no line (writers
share a lock a prune takes alone, and reopen a file a prune replaced while they waited); the
server prunes at start and then every interval."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mirror.clock import ManualClock
from mirror.retention.audit import AuditLog, prune_periodically

DAY = 86400.0


def runs(path: Path) -> list[str]:
    return [json.loads(line)["run"] for line in path.read_text().splitlines()]


def test_a_writer_appending_while_the_file_is_pruned_loses_no_line(tmp_path: Path) -> None:
    clock = ManualClock()
    log = AuditLog(tmp_path / "audit.jsonl", clock)
    for i in range(200):
        log.write("run", run=f"old-{i}")
    clock.advance(DAY)
    cutoff = clock.now()
    writer = AuditLog(tmp_path / "audit.jsonl", clock)  # another process's handle, as the CLI

    def write_new() -> None:
        for i in range(300):
            writer.write("run", run=f"new-{i}")

    thread = threading.Thread(target=write_new)
    thread.start()
    dropped = 0
    while thread.is_alive():
        dropped += log.prune(cutoff)
    thread.join()
    dropped += log.prune(cutoff)

    assert dropped == 200
    assert runs(log.path) == [f"new-{i}" for i in range(300)]


def test_a_line_that_is_not_an_event_is_kept(tmp_path: Path) -> None:
    clock = ManualClock()
    log = AuditLog(tmp_path / "audit.jsonl", clock)
    log.write("run", run="old")
    with log.path.open("a") as out:
        out.write("not json\n")
    clock.advance(DAY)
    log.write("run", run="new")

    assert log.prune(clock.now() - 1) == 1
    assert log.path.read_text().splitlines()[0] == "not json"


class Stop(Exception):
    """Ends the periodic job (it survives only the failures of a prune)."""


async def test_the_server_prunes_at_start_then_every_interval(tmp_path: Path) -> None:
    clock = ManualClock()
    log = AuditLog(tmp_path / "audit.jsonl", clock)
    log.write("run", run="first")
    clock.advance(2 * DAY)
    log.write("run", run="second")
    seen: list[list[str]] = []

    async def sleep(seconds: float) -> None:
        seen.append(runs(log.path))  # what the file held after each prune
        if len(seen) == 2:
            raise Stop
        assert seconds == 2 * DAY
        clock.advance(seconds)

    with pytest.raises(Stop):
        await prune_periodically(log, DAY, clock, sleep, interval=2 * DAY)

    # At start "first" was 2 days old (kept: 1 day); an interval later "second" was too.
    assert seen == [["second"], []]
