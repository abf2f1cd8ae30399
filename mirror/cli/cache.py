"""``mirror cache verify``: decrypt and hash every object of a cache, online or offline, and
evict the bad ones."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any, TextIO

from mirror.app.stores import open_store
from mirror.blobstore.scrub import ScrubReport, scrub
from mirror.cli.cachedir import add_cache_flags, run_on_cache
from mirror.cli.progress import Progress
from mirror.config import Config


def add(commands: Any) -> None:
    """Add ``cache`` and its actions to the ``mirror`` command's subparsers."""
    cache = commands.add_parser("cache", help="maintain the cache")
    actions = cache.add_subparsers(dest="action", required=True)
    verify = actions.add_parser(
        "verify", help="decrypt and hash every object; evict bad ones (exit 1 if any)"
    )
    add_cache_flags(verify)


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run ``mirror cache verify``: 0 all good, 1 bad or locked objects, 2 could not start."""
    return run_on_cache(args, lambda config: asyncio.run(verify(config, out, err)), err)


def _progress(err: TextIO) -> tuple[Callable[[ScrubReport], None], Callable[[], None]]:
    """A progress callback for ``scrub`` (a bar on a terminal, else plain lines) and its end."""
    progress: Progress | None = None

    def show(report: ScrubReport) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress("verify", report.total, err, unit="objects")
        progress.update(report.checked, f"{report.bytes / 1e6:.1f} MB, {len(report.bad)} bad")

    def close() -> None:
        if progress is not None:
            progress.close()

    return show, close


async def verify(config: Config, out: TextIO, err: TextIO) -> int:
    """Scrub the configured cache, printing bad and locked objects to ``out`` and progress to
    ``err``; returns the exit status."""
    store = open_store(config)
    show, close = _progress(err)
    try:
        report = await scrub(store, show)
    finally:
        close()
    for digest, reason in report.bad:
        print(f"BAD {digest}: {reason} (evicted)", file=out)
    for digest, kek_ids in report.locked:
        print(f"LOCKED {digest}: KEK {kek_ids} not loaded", file=out)
    print(
        f"verified {report.checked} objects ({report.bytes} bytes): "
        f"{len(report.bad)} bad, {len(report.locked)} locked",
        file=out,
    )
    return 1 if report.bad or report.locked else 0
