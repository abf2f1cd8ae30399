"""Blobs read ahead of the writer: handed over in order, at most ``depth`` read at once, a
failed read raised at its blob's turn, and every read still running cancelled when the writer
leaves early."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

import pytest

from mirror.bundle.readahead import Opened, read_ahead


class Source:
    """Blobs of three pieces named by their job, each read taking a moment; notes how many
    reads run at once, and which were closed before their end."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.running = 0
        self.most = 0
        self.unfinished: list[str] = []

    async def open(self, job: str) -> Opened:
        """The blob of ``job`` (authenticated when its name says so)."""
        return Opened(self._pieces(job), authenticated=job.startswith("auth"))

    async def _pieces(self, job: str) -> AsyncGenerator[bytes, None]:
        self.running += 1
        self.most = max(self.most, self.running)
        finished = False
        try:
            for n in range(3):
                await asyncio.sleep(0.001)
                if job == self.fail and n == 1:
                    raise OSError(f"cannot read {job}")
                yield f"{job}.{n}".encode()
            finished = True
        finally:
            self.running -= 1
            if not finished:
                self.unfinished.append(job)


async def written(source: Source, jobs: list[str], depth: int) -> list[tuple[str, bool, bytes]]:
    """Each job, whether it was authenticated, and its bytes, as the writer received them."""
    out = []
    async with aclosing(read_ahead(jobs, source.open, depth=depth)) as turns:
        async for turn in turns:
            await asyncio.sleep(0.005)  # the writer is slower than the reads
            async with aclosing(turn.chunks) as chunks:
                body = b"".join([chunk async for chunk in chunks])
            out.append((turn.job, turn.authenticated, body))
    return out


@pytest.mark.parametrize("depth", [1, 3, 10])
async def test_blobs_come_in_order_whole_with_at_most_depth_read_at_once(depth: int) -> None:
    jobs = ["a", "auth-b", "c", "d", "e"]
    source = Source()
    got = await written(source, jobs, depth)

    assert got == [(j, j.startswith("auth"), f"{j}.0{j}.1{j}.2".encode()) for j in jobs]
    assert source.most <= depth
    assert source.unfinished == []


async def test_reading_runs_ahead_of_a_slow_writer() -> None:
    source = Source()
    await written(source, ["a", "b", "c", "d"], depth=4)
    assert source.most > 1


async def test_a_failed_read_is_raised_at_its_turn_and_the_reads_ahead_are_cancelled() -> None:
    source = Source(fail="c")
    seen: list[str] = []
    with pytest.raises(OSError, match="cannot read c"):
        async with aclosing(read_ahead(list("abcdefg"), source.open, depth=3)) as turns:
            async for turn in turns:
                async with aclosing(turn.chunks) as chunks:
                    async for _ in chunks:
                        pass
                seen.append(turn.job)

    assert seen == ["a", "b"]
    await asyncio.sleep(0.05)
    assert source.running == 0
    assert "f" not in seen and "g" not in source.unfinished  # never started


async def test_a_writer_leaving_early_cancels_every_read_still_running() -> None:
    source = Source()
    async with aclosing(read_ahead(list("abcdef"), source.open, depth=4)) as turns:
        async for turn in turns:
            async with aclosing(turn.chunks) as chunks:
                await anext(chunks)
            break
    assert source.running == 0
    assert "a" in source.unfinished


async def test_depth_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        async with aclosing(read_ahead(["a"], Source().open, depth=0)) as turns:
            async for _ in turns:
                pass


async def test_a_job_not_read_ahead_starts_only_at_its_turn() -> None:
    source = Source()
    started: list[str] = []

    async def opener(job: str) -> Opened:
        started.append(job)
        return await source.open(job)

    order: list[tuple[str, list[str]]] = []
    turns = read_ahead(list("abcd"), opener, depth=4, ahead=lambda job: job != "c")
    async with aclosing(turns) as ready:
        async for turn in ready:
            await asyncio.sleep(0.01)  # every read ahead has begun by now
            order.append((turn.job, list(started)))
            async with aclosing(turn.chunks) as chunks:
                async for _ in chunks:
                    pass

    # "c" (a large blob) was opened only once the writer reached it; the others ahead.
    assert [seen for job, seen in order if job in "ab"] == [["a", "b", "d"], ["a", "b", "d"]]
    assert order[2] == ("c", ["a", "b", "d", "c"])
