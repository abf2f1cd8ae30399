"""One worker of a multi-process server: its place among the workers, as the supervisor set it.

The supervisor (:mod:`mirror.app.supervisor`) takes the data directory's lock, opens the
sockets and starts ``server.workers`` processes. Each worker gets a :class:`WorkerSlot`: the
inherited descriptors (the lock, its listening socket on the shared port, its private
loopback socket, the readiness and lifeline pipes) and the private ports of all workers.

The workers form a *local tier* (docs/tier.md): the same ring as a regional tier places each
digest on one worker, which alone fills it from upstream into the shared data directory; a
worker asked for a cold blob it does not own streams it from the owner's private port over the
signed peer route, uncached (the owner's copy is already in the shared store). So one upstream
GET serves every worker, as in one process.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from mirror.config import Config
from mirror.config.model import TierConfig

# The private ports are loopback: peer requests never leave the machine.
PEER_HOST = "127.0.0.1"


@dataclass(frozen=True)
class WorkerSlot:
    """Worker ``index`` of ``len(peer_ports)``, and the descriptors it inherited.

    ``first_start`` is set only for worker 0's first start: it alone sweeps what an earlier
    server left in the data directory (a later start would delete the other workers' fills).
    """

    index: int
    peer_ports: tuple[int, ...]
    lock_fd: int
    listen_fd: int
    peer_fd: int
    ready_fd: int
    lifeline_fd: int
    secret_file: str
    first_start: bool

    @property
    def count(self) -> int:
        """How many workers the server has."""
        return len(self.peer_ports)

    @property
    def runs_jobs(self) -> bool:
        """Whether this worker runs the server's background jobs (worker 0 only)."""
        return self.index == 0

    def peer_url(self, index: int) -> str:
        """Worker ``index``'s private base URL."""
        return f"http://{PEER_HOST}:{self.peer_ports[index]}"

    def fds(self) -> tuple[int, ...]:
        """The descriptors the worker inherits."""
        return (self.lock_fd, self.listen_fd, self.peer_fd, self.ready_fd, self.lifeline_fd)


def local_tier(config: Config, slot: WorkerSlot) -> Config:
    """``config`` for worker ``slot``: a member of the workers' local tier."""
    urls = tuple(slot.peer_url(i) for i in range(slot.count))
    # One data directory for every worker: a hosted blob is on the only disk there is, so it
    # needs no copy on another worker (hosted_replication 1).
    tier = TierConfig(
        replicas=urls,
        self=urls[slot.index],
        secret_file=slot.secret_file,
        hosted_replication=1,
    )
    return dataclasses.replace(config, tier=tier)


def write_assignment(path: Path, slot: WorkerSlot, config: Config) -> None:
    """Write what a worker starts from (its slot and the resolved configuration), owner-only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        pickle.dump((slot, config), out)


def read_assignment(path: Path) -> tuple[WorkerSlot, Config]:
    """What the supervisor wrote for this worker (a file in its owner-only run directory)."""
    with path.open("rb") as file:
        slot, config = pickle.load(file)
    if not isinstance(slot, WorkerSlot) or not isinstance(config, Config):
        raise ValueError(f"{path} is not a worker assignment")
    return slot, config


def signal_ready(slot: WorkerSlot) -> None:
    """Tell the supervisor this worker is listening."""
    os.write(slot.ready_fd, b"1")
    os.close(slot.ready_fd)
