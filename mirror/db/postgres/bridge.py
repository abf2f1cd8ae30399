"""A private event loop on a thread of its own, so synchronous callers can await asyncpg.

The metadata roles are synchronous (the services call them from their event loop and the
offline commands from plain code); asyncpg is asynchronous and bound to one loop. The bridge
owns that loop: ``call`` hands a coroutine to it and blocks until it is done.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running on a daemon thread until ``close``."""

    def __init__(self, name: str = "mirror-postgres") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result (its exception is raised here)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.call from its own loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self.loop.is_closed()

    def close(self) -> None:
        """Stop the loop and join its thread (tasks still pending are cancelled first)."""
        if self.closed:
            return
        self.call(_cancel_others())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _cancel_others() -> None:
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
