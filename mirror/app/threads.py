"""The threads that do the server's blocking work (hashing, sealing and writing a fill's
chunks, reading files) for the event loop: the loop's default executor.

Two things a request answered on the loop must not wait for (profile:
benchmarks/published/profiles/lanes.md):

* **Priority.** On a machine with fewer cores than busy threads, a fill's threads and the loop
  thread share the CPU. Each thread of this pool lowers its own scheduling priority by
  ``nice`` when it starts (Linux keeps a nice value per thread), so the kernel runs the loop
  thread, which answers requests, first whenever both want a core.
* **Thread start-up on the loop.** A ``ThreadPoolExecutor`` starts its threads one by one
  as jobs arrive, and ``Thread.start`` blocks its caller (the loop) until the new thread has
  run; on a loaded machine that took tens of milliseconds each time the first fills began.
  Every thread of this pool is started before the server answers anything.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

# How long the pool's threads may take to start, together.
START_TIMEOUT = 30.0


def thread_count(cpus: int | None) -> int:
    """asyncio's default size for its default executor: CPUs + 4, at most 32."""
    return min(32, (cpus or 1) + 4)


def lower_priority(nice: int) -> None:
    """Lower the calling thread's scheduling priority by ``nice`` (at most to 19). Only on
    Linux, where a thread has a nice value of its own; elsewhere it would be the process's."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError as exc:  # a sandbox may forbid it: the thread runs at the loop's priority
        log.warning("cannot lower the priority of a blocking-work thread: %s", exc)


def open_threads(count: int, nice: int) -> ThreadPoolExecutor:
    """A pool of ``count`` threads, each ``nice`` below its creator's priority, all of them
    started before this returns."""
    if count < 1:
        raise ValueError("count must be >= 1")
    pool = ThreadPoolExecutor(
        count, thread_name_prefix="mirror-work", initializer=lower_priority, initargs=(nice,)
    )
    # Each job holds its thread until all have arrived, so every submit starts a new thread.
    arrived = threading.Barrier(count)
    started = [pool.submit(arrived.wait, START_TIMEOUT) for _ in range(count)]
    for job in started:
        job.result()
    return pool
