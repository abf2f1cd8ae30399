"""One target's share of a run: its images, its rows, and :meth:`Bench.measure`, which runs
one case in a closed or open loop over a fresh session of N keep-alive connections with a
progress bar."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from mirror.bench.image import Image, ImageRef
from mirror.bench.loops import OpenLoop, Operation, closed_loop
from mirror.bench.plan import Plan
from mirror.bench.results import Row
from mirror.bench.stats import Sample, summarise
from mirror.bench.target import Target
from mirror.clock import Clock


class Progress(Protocol):
    """A progress display for one case."""

    def update(self, done: int, note: str = "") -> None:
        """Now ``done`` operations are finished."""

    def close(self) -> None:
        """The case is over."""


ProgressFactory = Callable[[str, int], Progress]
MakeOperation = Callable[[aiohttp.ClientSession], Operation]
FreshImage = Callable[[], Awaitable[ImageRef]]


class DeadlineReached(Exception):
    """The run's ``--deadline`` has passed: what is left is not started."""


class NoProgress:
    """Shows nothing."""

    def update(self, done: int, note: str = "") -> None:
        """Ignore progress."""

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class Bench:
    """A run's view of one target."""

    target: Target
    plan: Plan
    clock: Clock
    progress: ProgressFactory = lambda label, total: NoProgress()
    image: ImageRef | None = None
    resolved: Image | None = None
    fresh: FreshImage | None = None
    cold_images: list[ImageRef] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stop_at: float = float("inf")

    def time_left(self) -> float:
        """Seconds a new case may run: the plan's duration, cut short by the deadline;
        raises :class:`DeadlineReached` when none is left."""
        left = min(self.plan.duration, self.stop_at - self.clock.monotonic())
        if left <= 0:
            raise DeadlineReached
        return left

    async def measure(
        self,
        workload: str,
        case: str,
        make: MakeOperation,
        *,
        count: int,
        workers: int,
        connections: int | None = None,
        open_loop: bool = False,
    ) -> Row:
        """Run ``count`` operations (bounded by :meth:`time_left`) and record the row."""
        duration = self.time_left()
        tracker = self.progress(f"{self.target.label} {workload} {case}", count)
        rate = self.plan.rate if open_loop else None
        try:
            async with self.target.session(connections or workers) as http:
                operation = make(http)
                samples, elapsed = await self._loop(
                    operation, count, workers, rate, duration, tracker
                )
        finally:
            tracker.close()
        row = Row(
            self.target.label,
            workload,
            case,
            "open" if rate else "closed",
            workers,
            rate,
            round(elapsed, 6),
            summarise(samples, count, elapsed),
        )
        self.rows.append(row)
        return row

    async def _loop(
        self,
        operation: Operation,
        count: int,
        workers: int,
        rate: float | None,
        duration: float,
        tracker: Progress,
    ) -> tuple[list[Sample], float]:
        if rate:
            loop = OpenLoop(rate, self.clock)
            return await loop.run(operation, count=count, duration=duration, on_done=tracker.update)
        return await closed_loop(
            operation,
            workers=workers,
            count=count,
            duration=duration,
            clock=self.clock,
            on_done=tracker.update,
        )

    def record(
        self, workload: str, case: str, samples: list[Sample], requested: int, concurrency: int
    ) -> Row:
        """A row of samples measured one by one (cold and warm pulls)."""
        elapsed = sum(sample.latency for sample in samples)
        row = Row(
            self.target.label,
            workload,
            case,
            "closed",
            concurrency,
            None,
            round(elapsed, 6),
            summarise(samples, requested, elapsed),
        )
        self.rows.append(row)
        return row
