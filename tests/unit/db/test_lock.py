"""The data directory's lock: one server (or one offline run) per data directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from mirror.db.lock import DataDirLock, DataDirLocked

SERVER = "a running mirror server"


def test_a_second_server_is_refused_with_the_directory_and_the_running_servers_pid(
    tmp_path: Path,
) -> None:
    running = DataDirLock(tmp_path)
    running.acquire(holder=SERVER)
    try:
        with pytest.raises(DataDirLocked) as refused:
            DataDirLock(tmp_path).acquire(holder=SERVER)
    finally:
        running.release()

    assert str(refused.value) == f"{tmp_path} is in use by {SERVER} (PID {os.getpid()})"


def test_an_offline_run_is_refused_while_a_server_runs_and_a_server_while_it_runs(
    tmp_path: Path,
) -> None:
    server = DataDirLock(tmp_path)
    server.acquire(holder=SERVER)
    with pytest.raises(DataDirLocked, match="in use by a running mirror server"):
        DataDirLock(tmp_path).acquire(exclusive=True)
    server.release()

    offline = DataDirLock(tmp_path)
    offline.acquire(exclusive=True)
    with pytest.raises(DataDirLocked, match="in use by an offline mirror command"):
        DataDirLock(tmp_path).acquire(holder=SERVER)
    offline.release()


def test_a_released_lock_can_be_taken_again_and_names_no_holder(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire(holder=SERVER)
    first.release()

    assert first.path.read_bytes() == b""
    again = DataDirLock(tmp_path)
    again.acquire(holder=SERVER)
    again.release()


def test_a_holder_that_wrote_nothing_is_another_mirror_process(tmp_path: Path) -> None:
    # A server of the previous version took the lock shared and wrote nothing.
    fd = os.open(tmp_path / "mirror.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        with pytest.raises(DataDirLocked) as refused:
            DataDirLock(tmp_path).acquire(holder=SERVER)
    finally:
        os.close(fd)

    assert str(refused.value) == f"{tmp_path} is in use by another mirror process"


def test_workers_share_the_lock_their_supervisor_took_and_a_second_server_is_still_refused(
    tmp_path: Path,
) -> None:
    supervisor = DataDirLock(tmp_path)
    supervisor.acquire(holder="a running mirror server (2 workers)")
    # A worker inherits the descriptor (here: a duplicate of it, as fork and exec give).
    worker = DataDirLock.adopt(tmp_path, os.dup(supervisor.fd))
    with pytest.raises(DataDirLocked, match=r"a running mirror server \(2 workers\)"):
        DataDirLock(tmp_path).acquire(holder="a running mirror server")
    # A worker that stops leaves the holder's record alone; while one lives, it holds.
    worker.release()
    assert "2 workers" in (tmp_path / "mirror.lock").read_text()
    worker = DataDirLock.adopt(tmp_path, os.dup(supervisor.fd))
    supervisor.release()
    with pytest.raises(DataDirLocked):
        DataDirLock(tmp_path).acquire(holder="a running mirror server")
    worker.release()
    DataDirLock(tmp_path).acquire()


def test_a_descriptor_of_another_file_is_not_the_lock(tmp_path: Path) -> None:
    DataDirLock(tmp_path).acquire()
    other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT, 0o600)
    with pytest.raises(DataDirLocked, match="another file"):
        DataDirLock.adopt(tmp_path, other)
    os.close(other)
