"""The mirror's log handler: on the event loop, the lines of one iteration in one write."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

from mirror.cli.logs import BatchedStreamHandler


class CountingStream(io.StringIO):
    """A text stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("mirror.access", logging.INFO, __file__, 1, message, (), None)


def test_lines_logged_in_one_loop_iteration_are_written_together_after_it() -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream)

    async def main() -> tuple[str, str]:
        for n in range(3):
            handler.handle(record(f"line {n}"))
        during = stream.getvalue()
        await asyncio.sleep(0)  # the iteration ends: the pending lines are written
        return during, stream.getvalue()

    during, after = asyncio.run(main())
    assert during == ""
    assert after == "line 0\nline 1\nline 2\n"
    assert stream.writes == 1


def test_a_line_from_a_thread_without_a_loop_is_written_at_once_after_the_pending_ones() -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream)

    async def main() -> str:
        handler.handle(record("from the loop"))
        thread = threading.Thread(target=handler.handle, args=(record("from a thread"),))
        thread.start()
        thread.join()
        return stream.getvalue()

    assert asyncio.run(main()) == "from the loop\nfrom a thread\n"


def test_no_line_is_lost_when_the_loop_stops_before_its_write() -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream)

    async def main() -> None:
        handler.handle(record("last words"))

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    loop.close()  # the scheduled write never ran
    handler.flush()  # what logging.shutdown does at exit
    assert stream.getvalue() == "last words\n"
