"""A running ``mirror serve``: the threads that hash, seal and write a fill's chunks run below
the priority of the thread that answers requests, read from the kernel (/proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mirror.app.threads import thread_count
from tests.peers.ports import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice"),
]


def nices(pid: int) -> dict[int, int]:
    """Each thread of process ``pid``: its nice value (field 19 of its stat line)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        found[int(task.name)] = int(stat.rpartition(")")[2].split()[16])
    return found


def serve(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRROR_")}
    env["MIRROR_ENCRYPTION_KEK_FILE"] = str(tmp_path / "kek")
    argv = ["serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen([sys.executable, "-m", "mirror", *argv, *flags], env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_blocking_work_threads_run_ten_below_the_loop_thread(tmp_path: Path) -> None:
    proc, _ = serve(tmp_path)
    try:
        threads = nices(proc.pid)
    finally:
        stop(proc)
    loop = threads.pop(proc.pid)  # the main thread runs the event loop
    assert loop == os.nice(0)
    lowered = [tid for tid, nice in threads.items() if nice == min(19, loop + 10)]
    # All of them started with the server, before the first request was answered.
    assert len(lowered) == thread_count(os.cpu_count())


def test_thread_nice_zero_keeps_them_at_the_loops_priority(tmp_path: Path) -> None:
    (tmp_path / "mirror.toml").write_text("[server]\nthread_nice = 0\n")
    proc, _ = serve(tmp_path, "--config", str(tmp_path / "mirror.toml"))
    try:
        threads = nices(proc.pid)
    finally:
        stop(proc)
    assert set(threads.values()) == {os.nice(0)}
