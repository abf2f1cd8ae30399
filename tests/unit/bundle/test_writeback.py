"""Write-behind: a bundle's bytes start going to disk as they are written, so the fsync at
the end has little left; it is a hint that never changes what the file holds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mirror.bundle.writeback import WriteBehind, sync_file_range

STEP = 64 * 1024


@pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux's")
def test_every_step_of_new_bytes_is_handed_to_writeback_once(tmp_path: Path) -> None:
    with (tmp_path / "bundle.tar.part").open("wb") as out:
        behind = WriteBehind(out, STEP)
        out.write(b"a" * (STEP - 1))
        behind()
        assert behind.started == 0  # less than a step is waiting
        out.write(b"b" * (2 * STEP + 1))
        behind()
        assert behind.started == 3 * STEP
        behind()
        assert behind.started == 3 * STEP  # nothing new, nothing started twice
        out.flush()
        os.fsync(out.fileno())
    assert (tmp_path / "bundle.tar.part").read_bytes() == b"a" * (STEP - 1) + b"b" * (2 * STEP + 1)


@pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux's")
def test_a_file_cut_back_resumes_write_behind_from_the_cut(tmp_path: Path) -> None:
    with (tmp_path / "bundle.tar.part").open("w+b") as out:
        behind = WriteBehind(out, STEP)
        out.write(b"x" * 2 * STEP)
        behind()
        out.seek(STEP)
        out.truncate(STEP)  # a member that failed its check is cut away
        behind()
        out.write(b"y" * STEP)
        behind()
        assert behind.started == 3 * STEP
    assert (tmp_path / "bundle.tar.part").read_bytes() == b"x" * STEP + b"y" * STEP


def test_without_the_call_nothing_is_started_and_the_bytes_are_the_same(tmp_path: Path) -> None:
    refused: list[int] = []

    def unsupported(fd: int, offset: int, length: int, flags: int) -> int:
        refused.append(length)
        return -1

    with (tmp_path / "bundle.tar.part").open("wb") as out:
        behind = WriteBehind(out, STEP, unsupported)
        out.write(b"z" * 3 * STEP)
        behind()
        out.write(b"z" * 3 * STEP)
        behind()
    assert behind.started == 0 and refused == [3 * STEP]  # refused once, then left to fsync
    assert (tmp_path / "bundle.tar.part").read_bytes() == b"z" * 6 * STEP


@pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux's")
def test_linux_has_the_call() -> None:
    assert sync_file_range() is not None
