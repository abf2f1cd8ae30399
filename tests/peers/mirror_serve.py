"""A real ``mirror serve`` process (``python -m mirror serve --config FILE``) on 127.0.0.1, for
tests that need what an in-process server cannot give: a ``kill -9`` and a restart on the same
data directory. Its log (stderr) goes to a file, so no pipe can fill and stall it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.peers.ports import free_port
from tests.peers.process import ServiceProcess

START_TIMEOUT = 30.0
_CHECKOUT = Path(__file__).resolve().parents[2]


class MirrorServe(ServiceProcess):
    """``mirror serve`` with ``config`` (TOML text whose ``{port}`` is filled in with a free
    port at each start, or with ``port`` when given: a tier's replicas are listed by address
    before they start); ``url`` is where it listens, ``log`` its stderr so far."""

    def __init__(self, base_dir: Path, config: str, port: int | None = None) -> None:
        self.base_dir = base_dir
        self.config_text = config
        self._fixed_port = port
        self.port = port or 0
        self.starts = 0
        base_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running process."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """stderr of the latest start."""
        return self.base_dir / f"serve-{self.starts}.log"

    def start_sync(self) -> None:
        """Start it and wait until it logs that it is listening (or exits, or times out)."""
        self.starts += 1
        self.port = self._fixed_port or free_port()
        config = self.base_dir / "mirror.toml"
        config.write_text(self.config_text.replace("{port}", str(self.port)))
        env = {**os.environ, "PYTHONPATH": str(_CHECKOUT)}
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "mirror", "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while "listening on" not in self.log():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop_sync()
                raise RuntimeError(f"mirror serve did not start:\n{self.log()}")
            time.sleep(0.05)

    async def start(self) -> None:
        """:meth:`start_sync` without blocking the event loop."""
        await asyncio.to_thread(self.start_sync)

    def log(self) -> str:
        """What the latest start has written to stderr."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def kill_sync(self) -> None:
        """``kill -9``: no signal handler, no clean-up, no flush runs."""
        process, self._process = self._process, None
        if process is not None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    async def kill(self) -> None:
        """:meth:`kill_sync` without blocking the event loop."""
        await asyncio.to_thread(self.kill_sync)
