"""A real small filesystem (a tmpfs of a few MiB, mounted as root) that a test fills up, so
writes fail exactly as on a full disk: sqlite with ``database or disk is full``, files with
``ENOSPC``. The mount is always removed after the test."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = "filler"


@contextlib.contextmanager
def small_disk(directory: Path, size: str = "4m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``directory`` (created) for the block; skips when not
    root, since mounting needs it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        check=True,
    )
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory: Path) -> None:
    """Use up every free byte of the filesystem of ``directory`` with a filler file."""
    chunk = b"\0" * 4096
    with open(directory / FILLER, "ab", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # A few bytes may still fit after the last whole chunk.
    with contextlib.suppress(OSError), open(directory / FILLER, "ab", buffering=0) as out:
        while out.write(b"\0"):
            pass


def free(directory: Path) -> None:
    """Give back the space ``fill`` took."""
    (directory / FILLER).unlink()
