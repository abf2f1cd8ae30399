"""``mirror check [TARGET] --origin URL``: the mirror-behaviour suite. It starts a counting
proxy in front of the origin; the target mirror must use that proxy as its upstream, so either
point a mirror at the printed proxy URL (``--proxy-port`` fixes it) or let ``--start-mirror``
run this mirror in front of it."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mirror.app.loopback import mirror_on_loopback
from mirror.check.report import table, to_json
from mirror.check.suite import Settings, TargetStarter, given_target, run_suite
from mirror.metrics import Metrics


def add(commands: Any) -> None:
    """Add ``check`` and its flags to the ``mirror`` command's subparsers."""
    check = commands.add_parser("check", help="check how a pull-through mirror behaves")
    check.add_argument("target", nargs="?", help="the mirror's base URL (not with --start-mirror)")
    check.add_argument("--origin", required=True, help="the origin registry's URL (push access)")
    check.add_argument(
        "--start-mirror", action="store_true", help="run this mirror in front of the proxy"
    )
    check.add_argument(
        "--ns",
        help="the ?ns= name the target maps to the proxy (default: the "
        "origin's host:port; '' sends none)",
    )
    check.add_argument("--tag-ttl", type=float, default=1.0, help="the target's tag TTL, s")
    check.add_argument("--proxy-port", type=int, default=0, help="the proxy's port on 127.0.0.1")
    check.add_argument("--seed", type=int, default=16, help="random seed of the image")
    check.add_argument("--quick", action="store_true", help="small blobs (256 KiB)")
    check.add_argument("--timeout", type=float, default=10.0, help="per request, s")
    check.add_argument("--deadline", type=float, default=120.0, help="whole run, s")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Run ``mirror check``; 0 when every check passes, 1 when one does not, 2 on bad use."""
    if args.start_mirror == bool(args.target):
        print("mirror check: give TARGET or --start-mirror (one of them)", file=sys.stderr)
        return 2
    origin_host = urlsplit(args.origin).netloc
    settings = Settings(
        origin=args.origin.rstrip("/"),
        ns=origin_host if args.ns is None else (args.ns or None),
        tag_ttl=args.tag_ttl,
        seed=args.seed,
        layer_size=(256 << 10) if args.quick else (1 << 20),
        timeout=args.timeout,
        deadline=args.deadline,
        proxy_port=args.proxy_port,
    )
    starter: TargetStarter
    if args.start_mirror:
        starter = lambda proxy: own_mirror(proxy, origin_host, args.tag_ttl)  # noqa: E731
    else:
        starter = lambda proxy: given_target(args.target)  # noqa: E731
    results = asyncio.run(run_suite(settings, starter, on_proxy=_announce))
    target = "mirror (--start-mirror)" if args.start_mirror else args.target
    print(to_json(target, results) if args.json else table(results))
    return 0 if all(r.outcome == "pass" for r in results) else 1


def _announce(proxy_url: str) -> None:
    print(f"counting proxy on {proxy_url}: the target's upstream must be it", file=sys.stderr)


@asynccontextmanager
async def own_mirror(proxy_url: str, upstream_host: str, tag_ttl: float) -> AsyncIterator[str]:
    """This mirror in-process on loopback, with ``upstream_host`` served from ``proxy_url``
    and the given tag TTL; yields its URL. Its data lives in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="mirror-check-") as scratch:
        async with mirror_on_loopback(
            Path(scratch), upstream_host, proxy_url, Metrics(), tag_ttl=tag_ttl
        ) as url:
            yield url
