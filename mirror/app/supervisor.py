"""The supervisor of a multi-process server: the lock, the sockets, and one process per worker.

It takes the data directory's lock (each worker inherits the descriptor, so a second server is
refused while any worker lives), holds the shared port with a bound, non-listening
``SO_REUSEPORT`` socket (nobody else can bind it between worker restarts, and a plain server
on the same port is refused), and gives each worker incarnation its own listening
``SO_REUSEPORT`` socket on that port: the kernel spreads new connections over the live ones,
and a dead worker's socket closes with it, so new connections go to the others. Each worker
also has a private loopback socket the supervisor keeps for its whole life, so a restarted
worker answers its peers on the same port.

Worker 0 starts first and alone sweeps the data directory; then the others start. A worker
that exits unexpectedly is restarted (after ``restart_delay``, doubled while it keeps dying
young). SIGTERM or SIGINT stops all of them. If the supervisor itself dies, the workers see
their lifeline pipe close and stop.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mirror.app.workers import PEER_HOST, WorkerSlot, write_assignment
from mirror.config import Config
from mirror.db.lock import DataDirLock

log = logging.getLogger("mirror")

# Seconds a worker may take to start listening (opening keys and measuring can take a while).
START_TIMEOUT = 120.0
# Seconds stopping workers may take to finish their requests before they are killed.
STOP_TIMEOUT = 30.0


class WorkerFailed(Exception):
    """A worker did not start; ``status`` is its exit status (its stderr said why)."""

    def __init__(self, index: int, status: int) -> None:
        super().__init__(f"worker {index} exited with status {status} while starting")
        self.status = status


def listen_address(listen: str) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """The socket family and address of ``HOST:PORT`` (a literal or a name that resolves)."""
    host, _, port = listen.rpartition(":")
    family, _, _, _, address = socket.getaddrinfo(
        host.strip("[]"), int(port), type=socket.SOCK_STREAM
    )[0]
    return family, (str(address[0]), int(address[1]))


def shared_socket(listen: str, *, listening: bool) -> socket.socket:
    """A ``SO_REUSEPORT`` socket bound to ``listen`` (listening, or the supervisor's anchor)."""
    family, address = listen_address(listen)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listening:
            sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def private_socket() -> socket.socket:
    """A listening socket on a free loopback port (a worker's peer route)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((PEER_HOST, 0))
    sock.listen(1024)
    return sock


@dataclass
class Worker:
    """One worker's process, its private socket and how soon it may be restarted."""

    index: int
    private: socket.socket
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = 0.0
    restart_at: float | None = None
    ready_fd: int = field(default=-1)


class Supervisor:
    """Runs ``count`` workers of ``config`` until a stop signal; ``command`` starts one
    (it is given ``--worker-slot PATH``); ``ready`` describes the server in the line logged
    once every worker listens."""

    def __init__(
        self,
        config: Config,
        count: int,
        command: Sequence[str] = (sys.executable, "-m", "mirror", "serve"),
        *,
        ready: str = "",
        restart_delay: float = 1.0,
    ) -> None:
        self.config = config
        self.count = count
        self.command = tuple(command)
        self.restart_delay = restart_delay
        # How the start-up line describes the server, once every worker listens.
        self.ready = ready
        self.stopping = False
        self.workers: list[Worker] = []
        self._run_dir = Path()
        self._lock = DataDirLock(Path(config.storage.data_dir))
        self._lifeline_read = self._lifeline_write = -1

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; 0 after a clean stop (``DataDirLocked``, ``OSError``
        or ``WorkerFailed`` when the server cannot start)."""
        self._lock.acquire(holder=f"a running mirror server ({self.count} workers)")
        anchor = None
        try:
            anchor = shared_socket(self.config.server.listen, listening=False)
            self._open()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._stop)
            self._start_all()
            log.info("mirror listening on %s", self.ready or self.config.server.listen)
            self._watch()
            return 0
        finally:
            self._stop_all()
            self._close()
            if anchor is not None:
                anchor.close()
            self._lock.release()

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _open(self) -> None:
        self._run_dir = Path(tempfile.mkdtemp(prefix="mirror-workers-"))
        secret = self._run_dir / "tier.secret"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        self._lifeline_read, self._lifeline_write = os.pipe()
        self.workers = [Worker(i, private_socket()) for i in range(self.count)]

    def _close(self) -> None:
        for worker in self.workers:
            worker.private.close()
        for fd in (self._lifeline_read, self._lifeline_write):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(self._run_dir, ignore_errors=True)

    def _slot(self, worker: Worker, listen_fd: int, ready_fd: int, first: bool) -> WorkerSlot:
        return WorkerSlot(
            index=worker.index,
            peer_ports=tuple(w.private.getsockname()[1] for w in self.workers),
            lock_fd=self._lock.fd,
            listen_fd=listen_fd,
            peer_fd=worker.private.fileno(),
            ready_fd=ready_fd,
            lifeline_fd=self._lifeline_read,
            secret_file=str(self._run_dir / "tier.secret"),
            first_start=first,
        )

    def _spawn(self, worker: Worker, *, first: bool) -> None:
        """Start ``worker``'s process (not waiting for it to listen)."""
        listener = shared_socket(self.config.server.listen, listening=True)
        ready_read, ready_write = os.pipe()
        try:
            slot = self._slot(worker, listener.fileno(), ready_write, first)
            path = self._run_dir / f"worker-{worker.index}.pickle"
            write_assignment(path, slot, self.config)
            worker.process = subprocess.Popen(
                [*self.command, "--worker-slot", str(path)],
                pass_fds=slot.fds(),
                start_new_session=True,
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            # The worker has its copies now: a dead worker's connections must not queue here.
            listener.close()
            os.close(ready_write)
        worker.started = time.monotonic()
        worker.ready_fd = ready_read
        log.info("worker %d started (PID %d)", worker.index, worker.process.pid)

    def _await_ready(self, worker: Worker) -> bool:
        """Wait until ``worker`` listens (True) or exits (False)."""
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while not self.stopping and time.monotonic() < deadline:
                readable, _, _ = select.select([worker.ready_fd], [], [], 0.2)
                if readable:
                    return os.read(worker.ready_fd, 1) == b"1"
            return False
        finally:
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _start_all(self) -> None:
        """Worker 0 first (it sweeps the data directory), then the others."""
        for worker in self.workers:
            self._spawn(worker, first=worker.index == 0)
            if not self._await_ready(worker) and not self.stopping:
                assert worker.process is not None
                raise WorkerFailed(worker.index, worker.process.wait())

    def _watch(self) -> None:
        """Restart workers that exit, until told to stop."""
        while not self.stopping:
            now = time.monotonic()
            for worker in self.workers:
                self._check(worker, now)
            time.sleep(0.1)

    def _check(self, worker: Worker, now: float) -> None:
        if worker.restart_at is not None:
            if now >= worker.restart_at:
                worker.restart_at = None
                self._spawn(worker, first=False)
                if not self._await_ready(worker) and not self.stopping:
                    log.error("worker %d did not start", worker.index)
            return
        process = worker.process
        if process is None or process.poll() is None:
            return
        young = now - worker.started < 10.0
        worker.delay = min(worker.delay * 2, 30.0) if young and worker.delay else self.restart_delay
        worker.restart_at = now + worker.delay
        log.warning(
            "worker %d (PID %d) exited with status %s; restarting in %.1f s",
            worker.index,
            process.pid,
            process.returncode,
            worker.delay,
        )

    def _stop_all(self) -> None:
        """SIGTERM every worker, then SIGKILL what is left after ``STOP_TIMEOUT``."""
        running = [w.process for w in self.workers if w.process and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in running:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("worker PID %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
