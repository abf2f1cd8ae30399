"""The lifetime of a peer process a test starts: stop by PID, context-manager forms."""

from __future__ import annotations

import asyncio
import subprocess
from types import TracebackType
from typing import Self

STOP_TIMEOUT = 5.0


class ServiceProcess:
    """Base of the peer runners: subclasses implement ``start`` and ``start_sync`` and set
    ``_process``; stopping (terminate, then kill after a grace period) and the ``with`` /
    ``async with`` forms live here once."""

    _process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running process, or ``None``."""
        return self._process.pid if self._process else None

    async def start(self) -> None:
        raise NotImplementedError

    def start_sync(self) -> None:
        raise NotImplementedError

    def _after_stop(self) -> None:
        """Clean-up a subclass needs once the process is gone."""

    def stop_sync(self) -> None:
        """Terminate the process (then kill it after a grace period); idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._after_stop()

    async def stop(self) -> None:
        """:meth:`stop_sync` without blocking the event loop."""
        await asyncio.to_thread(self.stop_sync)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __enter__(self) -> Self:
        self.start_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_sync()
