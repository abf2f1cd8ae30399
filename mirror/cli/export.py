"""``mirror export``: write the images of a list of references as an OCI image layout (a tar,
or a directory with ``--dir``), from a running mirror (``--mirror URL``) or from the cache
of ``--config`` (read directly; the configured mirror is served in-process only for what the
cache cannot answer alone, filling from its upstreams when connected)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mirror.bundle.export import Exporter, ImageSource, Planner, StoredBlobs
from mirror.bundle.fetched import FetchFailed
from mirror.bundle.sink import DirectorySink, TarSink
from mirror.cli.cachedir import add_cache_flags, cache_errors
from mirror.cli.progress import Progress
from mirror.errors import DigestMismatch
from mirror.oci.reflist import ImageRef, ReferenceListError, read_reference_list

if TYPE_CHECKING:
    from aiohttp import web

    from mirror.cli.export_source import BuildApp
    from mirror.config import Config


def add(commands: Any) -> None:
    """Add ``export`` to the ``mirror`` command's subparsers."""
    p = commands.add_parser("export", help="write images as an OCI image layout (tar or dir)")
    p.add_argument(
        "references",
        nargs="*",
        metavar="REF",
        help="e.g. docker.io/library/alpine:3.20; - for stdin (as mirror prewarm)",
    )
    p.add_argument(
        "-f",
        "--file",
        type=Path,
        action="append",
        default=[],
        help="a list of references, one a line, or Kubernetes YAML (repeatable)",
    )
    p.add_argument(
        "--stdin",
        action="store_true",
        help="read the image: fields of Kubernetes YAML or Helm output on stdin (same as -)",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", type=Path, help="the bundle tar to write")
    where.add_argument("--dir", type=Path, help="an image layout directory to write")
    p.add_argument("--mirror", help="URL of a running mirror to read from")
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        help="os/arch[/variant] to keep of an index (repeatable; default all)",
    )
    p.add_argument(
        "--referrers", action="store_true", help="also export signatures, SBOMs and attestations"
    )
    add_cache_flags(p)


@dataclass(frozen=True, slots=True)
class MirrorSource:
    """Where an export reads: images, and the blob store read directly when there is one."""

    images: ImageSource
    cached: StoredBlobs | None = None


@asynccontextmanager
async def mirror_source(
    args: argparse.Namespace, build: BuildApp | None = None
) -> AsyncIterator[MirrorSource]:
    """The running mirror (``--mirror``: aiohttp and no server imported), or the configured
    cache read directly, with the configured mirror served on loopback only for what the
    cache cannot answer alone (``CacheSource``)."""
    if args.mirror:
        import aiohttp

        from mirror.bundle.client import TIMEOUT, RegistryClient

        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            yield MirrorSource(RegistryClient(session, args.mirror))
        return
    from mirror.cli.cachedir import config_of
    from mirror.cli.export_source import CacheSource

    async with CacheSource(config_of(args), build or _build_app) as cache:
        yield MirrorSource(cache, cache)


def _build_app(config: Config) -> web.Application:
    """``build_app``, imported only when the cache cannot answer alone (it loads the whole
    server: stores, metadata, auth, console, retention)."""
    from mirror.app.build import build_app

    return build_app(config)


def references_of(args: argparse.Namespace, stdin: TextIO) -> list[ImageRef]:
    """The list the arguments, ``--file`` and stdin (``-`` or ``--stdin``) name, read as
    ``mirror prewarm`` reads its list (``ReferenceListError`` if one is bad)."""
    arguments = [ref for ref in args.references if ref != "-"]
    manifests = stdin.read() if args.stdin or "-" in args.references else None
    return read_reference_list(arguments, args.file, manifests)


async def export(
    args: argparse.Namespace, out: TextIO, err: TextIO, build: BuildApp | None = None
) -> int:
    """Plan and write the bundle, print its manifest to ``out``; returns the exit status
    (``build`` makes the in-process mirror: ``build_app`` by default)."""
    references = references_of(args, sys.stdin)
    if not references:
        print("mirror export: no references given", file=err)
        return 2
    sink = DirectorySink(args.dir) if args.dir else TarSink(args.output).open()
    progress: Progress | None = None

    def show(done: int, total: int) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress("export", total, err, unit="bytes")
        progress.update(done)

    started = time.monotonic()
    try:
        async with mirror_source(args, build) as mirror:
            planner = Planner(mirror.images, args.platform, args.referrers)
            plans = [await planner.plan(ref) for ref in references]
            manifest = await Exporter(mirror.images, sink, show, mirror.cached).write(plans)
    finally:
        if progress is not None:
            progress.close()
        if isinstance(sink, TarSink):
            sink.close()
    seconds = round(time.monotonic() - started, 3)
    manifest = {"bundle": str(args.dir or args.output), **manifest, "seconds": seconds}
    print(json.dumps(manifest, indent=2), file=out)
    return 0


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run ``mirror export``: 0 written, 1 an image could not be read (what was written stays
    for a resume), 2 bad arguments or the cache could not be opened."""
    try:
        return asyncio.run(export(args, out, err))
    except (FetchFailed, DigestMismatch) as exc:
        print(f"mirror export: {exc} (run again to resume)", file=err)
        return 1
    except ReferenceListError as exc:
        print(f"mirror export: {exc}", file=err)
        return 2
    except Exception as exc:
        if not isinstance(exc, cache_errors()):
            raise
        print(f"mirror export: {exc}", file=err)
        return 2
