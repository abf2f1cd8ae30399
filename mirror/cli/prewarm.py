"""``mirror prewarm``: fetch a list of images into a running mirror's cache (issue 12).

The list comes from arguments, ``--file`` (one reference a line, or Kubernetes YAML), and the
``image:`` fields of Kubernetes YAML or Helm output on stdin (``-``), as
:mod:`mirror.oci.reflist` reads them. Each image is one ``POST /admin/v1/prewarm`` to the
server, ``--concurrency`` at a time, with a progress bar; the final report gives bytes, time
and every image's result. Exit 0 when every image is warm, 1 when one failed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mirror.cli.client import (
    CREDENTIALS_HELP,
    AdminClient,
    Unreachable,
    add_credential_flags,
    credentials_of,
)
from mirror.cli.progress import Progress
from mirror.oci.reflist import ImageRef, ReferenceListError, read_reference_list

DESCRIPTION = (
    "Fetch images into a running mirror's cache (every platform of an index), --concurrency "
    "at a time, with a progress bar and a final report. References come from arguments, "
    "--file (one a line, or Kubernetes YAML) and the image: fields of Kubernetes YAML or Helm "
    "output on stdin (-). Exit 0 when every image is warm, 1 when one failed, 2 on bad input."
)


def add(commands: Any) -> None:
    """Add ``prewarm`` and its flags to the ``mirror`` command's subparsers."""
    parser = commands.add_parser(
        "prewarm",
        help="fetch images into a running mirror's cache",
        description=DESCRIPTION + " " + CREDENTIALS_HELP,
    )
    parser.add_argument("images", nargs="*", metavar="REF", help="image references; - for stdin")
    parser.add_argument(
        "--file", "-f", action="append", default=[], help="a list of references (repeatable)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="images at once (default 4)")
    parser.add_argument(
        "--url",
        default=os.environ.get("MIRROR_URL", "http://127.0.0.1:5016"),
        help="the mirror (default: $MIRROR_URL, else http://127.0.0.1:5016)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds one image may take (default 3600)"
    )
    add_credential_flags(parser)


def references(args: argparse.Namespace) -> list[ImageRef]:
    """The list the arguments, files and stdin name (``ReferenceListError`` if one is bad)."""
    stdin = "-" in args.images
    arguments = [image for image in args.images if image != "-"]
    return read_reference_list(arguments, args.file, sys.stdin.read() if stdin else None)


def summary(results: list[dict[str, Any]], seconds: float) -> list[str]:
    """The final report's lines: one per image, then the totals."""
    lines = []
    for r in results:
        if r["ok"]:
            lines.append(
                f"ok      {r['reference']}  {r['digest']}  {r['manifests']} manifests, "
                f"{r['blobs']} blobs ({r['blobs_fetched']} fetched), {r['bytes']} bytes "
                f"({r['bytes_fetched']} fetched)"
            )
        else:
            lines.append(f"FAILED  {r['reference']}  {r['error']}")
    failed = sum(1 for r in results if not r["ok"])
    total = sum(r["bytes"] for r in results)
    fetched = sum(r["bytes_fetched"] for r in results)
    lines.append(
        f"{len(results) - failed} of {len(results)} images warm, {total} bytes "
        f"({fetched} fetched now) in {seconds:.1f}s"
    )
    return lines


def _warm_one(client: AdminClient, ref: ImageRef) -> dict[str, Any]:
    """One image through the admin API: its result entry (a refusal becomes a failure)."""
    try:
        answer = client.call("POST", "/prewarm", {"images": [str(ref)], "concurrency": 1})
    except Unreachable as exc:
        return {
            "reference": str(ref),
            "ok": False,
            "error": str(exc),
            "bytes": 0,
            "bytes_fetched": 0,
        }
    document = answer.json() if answer.body else None
    if answer.ok and isinstance(document, dict) and document.get("results"):
        result: dict[str, Any] = document["results"][0]
        return result
    errors = document.get("errors") if isinstance(document, dict) else None
    why = errors[0].get("message") if errors else f"HTTP {answer.status}"
    return {"reference": str(ref), "ok": False, "error": why, "bytes": 0, "bytes_fetched": 0}


def run(args: argparse.Namespace) -> int:
    """Run ``mirror prewarm``."""
    try:
        refs = references(args)
    except ReferenceListError as exc:
        print(f"mirror prewarm: {exc}", file=sys.stderr)
        return 2
    if not refs or not 1 <= args.concurrency <= 64:
        print("mirror prewarm: name at least one image; --concurrency is 1..64", file=sys.stderr)
        return 2
    try:
        credentials = credentials_of(args.login, args.token_file, os.environ)
    except OSError as exc:
        print(f"mirror prewarm: cannot read the token file: {exc}", file=sys.stderr)
        return 2
    client = AdminClient(args.url, credentials, timeout=args.timeout)
    progress = Progress("prewarm", len(refs), sys.stderr, unit="images")
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        for result in pool.map(lambda ref: _warm_one(client, ref), refs):
            results.append(result)
            failed = sum(1 for r in results if not r["ok"])
            progress.update(len(results), f"{failed} failed" if failed else "")
    progress.close()
    for line in summary(results, time.monotonic() - started):
        print(line)
    return 0 if all(r["ok"] for r in results) else 1
