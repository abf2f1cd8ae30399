"""Everything the harness starts is registered here and stopped by PID, also on Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from types import FrameType

STOP_TIMEOUT = 5.0


class Processes:
    """A stack of things to stop (processes by PID, or callbacks), stopped newest first."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], None]]] = []

    def add_process(self, name: str, process: subprocess.Popen[bytes]) -> None:
        """Stop ``process`` (SIGTERM to its PID, SIGKILL after a grace period) at :meth:`close`."""
        self._stops.append((f"{name} (pid {process.pid})", lambda: stop_process(process)))

    def add_callback(self, name: str, stop: Callable[[], None]) -> None:
        """Call ``stop`` at :meth:`close`."""
        self._stops.append((name, stop))

    def remove(self, name: str) -> None:
        """Forget the entries registered as ``name`` (already stopped); a process's entry is
        ``name (pid N)``, so ``mirror-1`` never matches ``mirror-10``."""
        self._stops = [
            (n, s) for n, s in self._stops if n != name and not n.startswith(f"{name} (pid ")
        ]

    def close(self) -> None:
        """Stop everything still registered; a failure to stop one does not skip the others."""
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"  warning: stopping {name} failed: {exc!r}", flush=True)


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process by PID, wait, then SIGKILL; no-op if it already exited."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``KeyboardInterrupt`` so ``finally`` blocks stop our children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def http_status(url: str, timeout: float = 0.5) -> int | None:
    """The status of ``GET url``, or ``None`` if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)
    except OSError:
        return None


def wait_http(url: str, process: subprocess.Popen[bytes], within: float, what: str) -> None:
    """Wait until ``url`` answers while ``process`` is alive; raises ``RuntimeError``."""
    deadline = time.monotonic() + within
    while http_status(url) is None:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer {url} within {within:.0f} s")
        time.sleep(0.02)
