"""Making a written file durable and visible: the one way every store commits an object."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mirror.blobstore.pending import PendingSync
from mirror.oci.digest import Digest

# How a writer makes its temp file the object: ``(fd, temp_path, final_path)``, consuming ``fd``.
Installer = Callable[[int, Path, Path], None]


def install(fd: int, temp_path: Path, final_path: Path) -> None:
    """fsync and close ``fd`` (open on ``temp_path``), rename it to ``final_path`` and fsync
    the directory, so the object is either wholly there after a crash or not at all.

    ``fd`` is closed whatever happens; on failure the temp file is removed.
    """
    try:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        final_path.parent.mkdir(parents=True, exist_ok=True)
        os.rename(temp_path, final_path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    dir_fd = os.open(final_path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def publish(
    fd: int,
    temp_path: Path,
    final_path: Path,
    pending: PendingSync,
    digest: Digest,
    entry: Path | None = None,
) -> None:
    """Make ``temp_path`` visible as ``final_path`` now and durable later: list the object in
    the durability journal ``pending`` (unless ``entry`` lists it already, made durable
    earlier), rename it, and hand ``fd`` to the journal's thread, which fsyncs it and its
    directory, then drops the entry (a crash in between gets the object re-verified at
    start-up).

    ``fd`` is consumed whatever happens; on failure the temp file is removed.
    """
    try:
        entry = entry or pending.record(digest)
        try:
            final_path.parent.mkdir(parents=True, exist_ok=True)
            os.rename(temp_path, final_path)
        except BaseException:
            entry.unlink(missing_ok=True)
            raise
    except BaseException:
        os.close(fd)
        temp_path.unlink(missing_ok=True)
        raise
    pending.settle(fd, final_path, entry)


def restrict_to_owner(directory: Path) -> bool:
    """Take group and other access away from ``directory`` (the cache holds other people's
    private images, token hashes and upstream credentials); ``True`` if it changed."""
    mode = directory.stat().st_mode & 0o777
    if not mode & 0o077:
        return False
    directory.chmod(mode & 0o700)
    return True
