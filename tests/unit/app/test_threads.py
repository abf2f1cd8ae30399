"""The loop's blocking-work threads: below the loop thread's priority, all started at once
(read from the kernel: each thread's nice value in /proc)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from mirror.app.threads import lower_priority, open_threads, thread_count

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice")


def nice_of(tid: int, pid: int | None = None) -> int:
    """The nice value the kernel holds for thread ``tid`` (field 19 of its stat line)."""
    stat = Path(f"/proc/{pid or os.getpid()}/task/{tid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[16])


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mirror-work")]


@linux_only
def test_each_thread_runs_nice_below_the_thread_that_made_the_pool() -> None:
    mine = nice_of(threading.get_native_id())
    pool = open_threads(3, 10)
    try:
        tids = {pool.submit(threading.get_native_id).result() for _ in range(12)}
        assert tids and all(nice_of(tid) == min(19, mine + 10) for tid in tids)
        assert nice_of(threading.get_native_id()) == mine
    finally:
        pool.shutdown()


@linux_only
def test_no_thread_goes_below_the_lowest_priority() -> None:
    pool = open_threads(1, 30)
    try:
        assert nice_of(pool.submit(threading.get_native_id).result()) == 19
    finally:
        pool.shutdown()


@linux_only
def test_a_nice_of_zero_leaves_the_threads_at_the_loops_priority() -> None:
    mine = nice_of(threading.get_native_id())
    pool = open_threads(2, 0)
    try:
        assert nice_of(pool.submit(threading.get_native_id).result()) == mine
    finally:
        pool.shutdown()


def test_every_thread_is_started_before_the_pool_is_returned() -> None:
    before = len(pool_threads())
    pool = open_threads(5, 1)
    try:
        # No job was handed to it yet: a first job never waits for a thread to start.
        started = pool_threads()
        assert len(started) - before == 5 and all(t.is_alive() for t in started)
    finally:
        pool.shutdown()


@linux_only
def test_lowering_the_priority_changes_only_the_calling_thread() -> None:
    mine = nice_of(threading.get_native_id())
    seen: list[tuple[int, int]] = []

    def lowered() -> None:
        lower_priority(4)
        seen.append((threading.get_native_id(), nice_of(threading.get_native_id())))

    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    assert seen[0][1] == min(19, mine + 4)
    assert nice_of(threading.get_native_id()) == mine


def test_the_pool_has_asyncio_default_size() -> None:
    assert [thread_count(n) for n in (None, 1, 2, 28, 64)] == [5, 5, 6, 32, 32]
