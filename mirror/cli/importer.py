"""``mirror import``: place the images of a bundle (an OCI image layout, tar or directory)
into the cache as if pulled from their source registry, or into hosted repositories with
``--into TENANCY/PREFIX``.

It writes the data directory directly, as the stopped mirror's owner: it opens the
configured stores the way ``mirror serve`` does (same keys, same capacity limit), holding the
data directory's lock, so it refuses to run beside a running mirror. Cached namespaces take no
pushes by design, so there is no registry API to import into the cache through.

The server, stores and bundle modules are imported when the command runs, not when its flags
are added: ``mirror import --help`` (and every other subcommand's start) does without them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mirror.cli.cachedir import add_cache_flags, cache_errors, config_of

if TYPE_CHECKING:
    from aiohttp import web

    from mirror.bundle.imports import ImageResult
    from mirror.bundle.placement import Placement


def add(commands: Any) -> None:
    """Add ``import`` to the ``mirror`` command's subparsers."""
    p = commands.add_parser("import", help="import a bundle (OCI layout tar or directory)")
    p.add_argument("bundle", type=Path, help="a tar or directory holding an OCI image layout")
    p.add_argument(
        "--into",
        metavar="TENANCY/PREFIX",
        help="into hosted repositories PREFIX/<repo> of TENANCY, not the cache",
    )
    add_cache_flags(p)


@asynccontextmanager
async def opened(app: web.Application) -> AsyncIterator[web.Application]:
    """The app's resources started (lock, keys, stores) without serving anything."""
    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        yield app
    finally:
        await runner.cleanup()


def placement_of(app: web.Application, into: str | None) -> Placement:
    """The cache's placement, or the hosted one of ``into`` (which needs auth on)."""
    from mirror.bundle.placement import CachePlacement, HostedPlacement
    from mirror.clock import SystemClock
    from mirror.config import ConfigError
    from mirror.web.keys import AUTH, CACHE, HOSTED, METADATA, SERVICES

    clock = SystemClock()
    if into is None:
        return CachePlacement(app[CACHE], app[METADATA], app[SERVICES].router, clock)
    tenancy, _, prefix = into.partition("/")
    if AUTH not in app:
        raise ConfigError("--into needs hosted repositories, which need [auth] enabled = true")
    identity = app[AUTH].identity

    def create(tenancy: str, repo: str) -> None:
        identity.create_repository(tenancy, repo, clock.now(), exist_ok=True)

    return HostedPlacement(app[HOSTED], app[METADATA], tenancy, prefix, create)


async def import_bundle(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Import, print the report to ``out``; 1 if any image was refused."""
    from mirror.app.build import build_app
    from mirror.bundle.imports import Importer
    from mirror.bundle.source import BundleSource
    from mirror.cli.progress import Progress
    from mirror.web.keys import CACHE

    source = BundleSource(args.bundle)
    progress: Progress | None = None

    def show(done: int, total: int) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress("import", total, err, unit="bytes")
        progress.update(done)

    started = time.monotonic()
    async with opened(build_app(config_of(args))) as app:
        try:
            results = await Importer(source, app[CACHE], placement_of(app, args.into), show).run()
        finally:
            if progress is not None:
                progress.close()
    summary = {**report(results), "seconds": round(time.monotonic() - started, 3)}
    print(json.dumps(summary, indent=2), file=out)
    for result in results:
        if result.outcome == "refused":
            print(f"mirror import: refused {result.reference}: {result.reason}", file=err)
    return 1 if any(r.outcome == "refused" for r in results) else 0


def report(results: list[ImageResult]) -> dict[str, Any]:
    """The import report: added, skipped and refused images, with counts."""
    grouped: dict[str, Any] = {"added": [], "skipped": [], "refused": []}
    for result in results:
        grouped[result.outcome].append(result.as_json())
    grouped["blobs_added"] = sum(r.blobs_added for r in results)
    grouped["bytes_added"] = sum(r.bytes_added for r in results)
    return grouped


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run ``mirror import``: 0 all imported or already there, 1 an image refused (nothing of
    it stored), 2 the bundle or the cache could not be opened."""
    from mirror.oci.layout import LayoutError

    unopened: tuple[type[Exception], ...] = (LayoutError, *cache_errors())
    try:
        return asyncio.run(import_bundle(args, out, err))
    except unopened as exc:
        print(f"mirror import: {exc}", file=err)
        return 2
