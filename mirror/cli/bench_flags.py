"""The flags of ``mirror bench`` and their parsers (sizes with units, workload lists)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from mirror.bench.plan import DEFAULT_WORKLOADS, MIB, WORKLOADS

_SIZE = re.compile(r"^(\d+)\s*(|B|KiB|MiB|GiB|K|M|G)$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": MIB,
    "mib": MIB,
    "g": 1 << 30,
    "gib": 1 << 30,
}


def size(text: str) -> int:
    """``4MiB``, ``256KiB``, ``1G`` or plain bytes."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 8MiB, 256KiB, 1048576)")
    return int(match[1]) * _UNITS[match[2].lower()]


def workloads(text: str) -> tuple[str, ...]:
    """A comma-separated list of workloads, or ``all``."""
    if text == "all":
        return WORKLOADS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown workload {unknown}; choose from {WORKLOADS}")
    return names


def counts(text: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers (the sweep's concurrencies)."""
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrencies must be at least 1")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add(commands: Any) -> None:
    """Add ``bench`` and its flags to the ``mirror`` command's subparsers."""
    bench = commands.add_parser(
        "bench", help="benchmark pulls, pushes and manifests of any registry or mirror"
    )
    bench.add_argument("target", help="the registry's or mirror's base URL")
    bench.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="TARGET",
        help="another base URL run the same way; ratios to TARGET are shown",
    )
    _add_source_flags(bench)
    _add_plan_flags(bench)
    _add_access_flags(bench)
    out = bench.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    out.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots into DIR")
    out.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained report")
    out.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _add_source_flags(bench: argparse.ArgumentParser) -> None:
    source = bench.add_argument_group("images")
    source.add_argument("--image", help="REPO:TAG (or REPO@DIGEST) to pull from the targets")
    source.add_argument(
        "--origin",
        metavar="URL",
        help="the registry behind the mirror; with --allow-push fresh random "
        "images are pushed there (cold pulls, rollout, and the default image)",
    )
    source.add_argument(
        "--allow-push",
        action="store_true",
        help="allow pushes (to --origin, and the push workload to TARGET)",
    )
    source.add_argument(
        "--cold-images",
        type=Path,
        metavar="FILE",
        help="REPO:TAG lines the targets have not cached (cold workload)",
    )
    source.add_argument("--seed", type=int, default=16, help="random seed of pushed content")
    source.add_argument("--layers", type=_positive, default=3, help="layers of a pushed image")
    source.add_argument("--layer-size", type=size, default=4 * MIB, help="bytes per layer")


def _add_plan_flags(bench: argparse.ArgumentParser) -> None:
    plan = bench.add_argument_group("workloads and bounds")
    plan.add_argument(
        "--workload",
        type=workloads,
        default=DEFAULT_WORKLOADS,
        help=f"comma-separated, or all: {','.join(WORKLOADS)} "
        f"(default {','.join(DEFAULT_WORKLOADS)})",
    )
    plan.add_argument(
        "--requests",
        type=_positive,
        default=20,
        help="requests per case (manifest, blob, sweep level, push)",
    )
    plan.add_argument(
        "--pulls", type=_positive, default=3, help="whole pulls per case (pull, range, cold)"
    )
    plan.add_argument(
        "--connections",
        type=_positive,
        default=8,
        help="keep-alive connections and clients (manifest, blob, push)",
    )
    plan.add_argument(
        "--pull-concurrency",
        type=_positive,
        default=3,
        help="blobs fetched at once by a pull (containerd: 3)",
    )
    plan.add_argument("--rate", type=float, help="open loop: requests/s (manifest, blob)")
    plan.add_argument("--duration", type=float, default=30.0, help="at most seconds per case")
    plan.add_argument(
        "--deadline", type=float, default=300.0, help="at most seconds for the whole run"
    )
    plan.add_argument(
        "--sweep",
        type=counts,
        default=(1, 2, 4, 8, 16, 32, 64),
        help="concurrencies of the sweep (default 1,2,4,8,16,32,64)",
    )
    plan.add_argument("--chunk-size", type=size, default=8 * MIB, help="range size (8MiB)")
    plan.add_argument("--range-parallel", type=_positive, default=8, help="ranges at once (8)")
    plan.add_argument("--clients", type=_positive, default=8, help="nodes of a rollout")
    plan.add_argument("--push-size", type=size, default=MIB, help="bytes per pushed blob")
    plan.add_argument("--push-chunk", type=size, default=256 << 10, help="PATCH size")
    plan.add_argument("--push-repo", default="bench/push", help="repository pushed to")
    plan.add_argument("--no-warmup", action="store_true", help="no unmeasured first pull")


def _add_access_flags(bench: argparse.ArgumentParser) -> None:
    access = bench.add_argument_group("access")
    access.add_argument("--ns", help="?ns= sent with every request (node-local mirrors)")
    access.add_argument("--user", metavar="USER:PASSWORD", help="credentials for the targets")
    access.add_argument("--origin-user", metavar="USER:PASSWORD", help="credentials for --origin")
    access.add_argument(
        "--docker-config",
        type=Path,
        metavar="FILE",
        help="a docker config.json whose auths give credentials per host",
    )
    access.add_argument("--insecure", action="store_true", help="skip TLS certificate checks")
    access.add_argument("--ca", type=Path, metavar="FILE", help="CA bundle to trust")
    access.add_argument("--timeout", type=float, default=30.0, help="per request, s")
