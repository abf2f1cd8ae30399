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


def _progress(err: TextIO) -> Callable[[ScrubReport], None]:
    def show(report: ScrubReport) -> None:
        end = "\n" if report.checked == report.total else ""
        print(
            f"\rverify: {report.checked}/{report.total} objects, "
            f"{report.bytes / 1e6:.1f} MB, {len(report.bad)} bad",
            end=end,
            file=err,
            flush=True,
        )

    return show


async def verify(config: Config, out: TextIO, err: TextIO) -> int:
    """Scrub the configured cache, printing bad and locked objects to ``out`` and progress to
    ``err``; returns the exit status."""
    store = open_store(config)
    report = await scrub(store, _progress(err))
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
