"""How operations are issued: a closed loop (N workers, each sends its next request when the
previous one has answered) or an open loop (requests start at a fixed rate whatever happens).

In the open loop a request's latency counts from the time it was *meant* to be sent, so a
server that stalls is charged for every request that queued behind the stall; a closed loop
sends less when the server slows down and hides that (coordinated omission)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from mirror.bench.stats import Sample
from mirror.clock import Clock


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation did: the bytes it moved and its error ("" when it succeeded)."""

    size: int = 0
    error: str = ""


Operation = Callable[[], Awaitable[Outcome]]
Sleep = Callable[[float], Awaitable[None]]
OnDone = Callable[[int], None]


async def guarded(operation: Operation) -> Outcome:
    """Run ``operation``; a network failure or timeout is an error outcome, not an exception."""
    try:
        return await operation()
    except TimeoutError:
        return Outcome(error="timeout")
    except (aiohttp.ClientError, OSError) as error:
        return Outcome(error=type(error).__name__)


async def closed_loop(
    operation: Operation,
    *,
    workers: int,
    count: int,
    duration: float,
    clock: Clock,
    on_done: OnDone = lambda done: None,
) -> tuple[list[Sample], float]:
    """``count`` operations (fewer if ``duration`` s pass first) by ``workers`` workers; the
    samples and the wall time they took."""
    samples: list[Sample] = []
    issued = 0
    start = clock.monotonic()

    async def worker() -> None:
        nonlocal issued
        while issued < count and clock.monotonic() - start < duration:
            issued += 1
            sent = clock.monotonic()
            outcome = await guarded(operation)
            samples.append(Sample(clock.monotonic() - sent, outcome.size, outcome.error))
            on_done(len(samples))

    await asyncio.gather(*(worker() for _ in range(max(1, min(workers, count)))))
    return samples, clock.monotonic() - start


class OpenLoop:
    """Starts one operation every ``1 / rate`` s from the start, never waiting for answers."""

    def __init__(self, rate: float, clock: Clock, sleep: Sleep = asyncio.sleep) -> None:
        if rate <= 0:
            raise ValueError("an open loop needs a rate above 0 requests/s")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep

    def send_times(self, start: float, count: int, duration: float) -> list[float]:
        """The intended send times: ``count`` of them, none ``duration`` s after ``start``."""
        times = (start + i / self.rate for i in range(count))
        return [t for t in times if t - start < duration]

    async def run(
        self,
        operation: Operation,
        *,
        count: int,
        duration: float,
        on_done: OnDone = lambda done: None,
    ) -> tuple[list[Sample], float]:
        """Issue the operations on schedule; the samples (latency from the intended send
        time) in schedule order and the wall time until the last one answered."""
        start = self._clock.monotonic()
        done = 0

        async def one(intended: float) -> Sample:
            nonlocal done
            outcome = await guarded(operation)
            done += 1
            on_done(done)
            return Sample(self._clock.monotonic() - intended, outcome.size, outcome.error)

        tasks: list[asyncio.Task[Sample]] = []
        for intended in self.send_times(start, count, duration):
            delay = intended - self._clock.monotonic()
            if delay > 0:
                await self._sleep(delay)
            tasks.append(asyncio.create_task(one(intended)))
        samples = list(await asyncio.gather(*tasks))
        return samples, self._clock.monotonic() - start
