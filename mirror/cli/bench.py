"""``mirror bench TARGET [--compare TARGET ...]``: pull, push and manifest latency and
throughput of any OCI registry or mirror, printed as a table and optionally written as JSON,
PNG plots and a self-contained HTML page. Bounded by ``--requests``/``--pulls`` and
``--duration``; it pushes nothing unless ``--allow-push`` says it may."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import urlsplit

from mirror.bench.credentials import Credentials, CredentialsError, from_docker_config, parse_user
from mirror.bench.image import ImageError, ImageRef
from mirror.bench.plan import Plan
from mirror.bench.report.html import report_html
from mirror.bench.report.plots import plots
from mirror.bench.report.table import table
from mirror.bench.results import Results
from mirror.bench.run import Sources, run_bench
from mirror.bench.session import Progress as ProgressLike
from mirror.bench.target import Target, Tls
from mirror.check.seed import SeedError
from mirror.cli.bench_flags import add
from mirror.cli.progress import Progress

__all__ = ["add", "run"]


class UsageError(ValueError):
    """A flag combination ``mirror bench`` refuses (exit status 2)."""


def plan_of(args: argparse.Namespace) -> Plan:
    """The :class:`Plan` the flags describe; raises :class:`UsageError` on unsafe ones."""
    if "push" in args.workload and not args.allow_push:
        raise UsageError("the push workload writes to TARGET: add --allow-push")
    if args.origin and not args.allow_push:
        raise UsageError("--origin is pushed to (fresh random images): add --allow-push")
    if args.rate is not None and args.rate <= 0:
        raise UsageError("--rate must be above 0")
    if args.duration <= 0 or args.deadline <= 0:
        raise UsageError("--duration and --deadline must be above 0 s")
    return Plan(
        workloads=args.workload,
        requests=args.requests,
        pulls=args.pulls,
        connections=args.connections,
        pull_concurrency=args.pull_concurrency,
        rate=args.rate,
        duration=args.duration,
        deadline=args.deadline,
        sweep=args.sweep,
        chunk=args.chunk_size,
        range_parallel=args.range_parallel,
        clients=args.clients,
        push_size=args.push_size,
        push_chunk=args.push_chunk,
        push_repo=args.push_repo,
        allow_push=args.allow_push,
        seed=args.seed,
        layers=args.layers,
        layer_size=args.layer_size,
        warmup=not args.no_warmup,
    )


def _credentials(args: argparse.Namespace, url: str, user: str | None) -> Credentials | None:
    if user:
        return parse_user(user)
    if args.docker_config is not None:
        return from_docker_config(args.docker_config, urlsplit(url).netloc)
    return None


def _target(args: argparse.Namespace, url: str, user: str | None, ns: str | None) -> Target:
    if urlsplit(url).scheme not in ("http", "https"):
        raise UsageError(f"{url}: a target is an http:// or https:// base URL")
    label = urlsplit(url).netloc
    tls = Tls(args.insecure, args.ca)
    creds = _credentials(args, url, user)
    return Target(label, url, ns, creds, tls, args.timeout)


def sources_of(args: argparse.Namespace) -> Sources:
    """The images of the run."""
    origin = _target(args, args.origin, args.origin_user, None) if args.origin else None
    cold: list[ImageRef] = []
    if args.cold_images is not None:
        try:
            lines = args.cold_images.read_text().splitlines()
        except OSError as error:
            raise UsageError(f"--cold-images: {error}") from None
        cold = [ImageRef.parse(x.strip()) for x in lines if x.strip() and not x.startswith("#")]
    image = ImageRef.parse(args.image) if args.image else None
    return Sources(image, origin, cold)


def _progress(quiet: bool) -> Any:
    def make(label: str, total: int) -> ProgressLike:
        return Progress(label, total, sys.stderr, unit="ops", terminal=None)

    return (lambda label, total: _Silent()) if quiet else make


class _Silent:
    def update(self, done: int, note: str = "") -> None:
        pass

    def close(self) -> None:
        pass


def write_outputs(args: argparse.Namespace, results: Results) -> None:
    """The JSON, PNG and HTML files asked for."""
    pngs = plots(results) if args.plots or args.html else {}
    if args.plots:
        args.plots.mkdir(parents=True, exist_ok=True)
        for name, data in pngs.items():
            (args.plots / name).write_bytes(data)
    if args.html:
        args.html.write_text(report_html(results, pngs))
    if args.json:
        args.json.write_text(json.dumps(results.to_dict(), indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    """Run ``mirror bench``: 0 when every operation succeeded, 1 when some failed, 2 on
    bad use (including a push that was not allowed)."""
    try:
        plan = plan_of(args)
        targets = [_target(args, url, args.user, args.ns) for url in [args.target, *args.compare]]
        sources = sources_of(args)
    except (UsageError, CredentialsError, ImageError) as error:
        print(f"mirror bench: {error}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(run_bench(targets, plan, sources, progress=_progress(args.quiet)))
    except SeedError as error:
        print(f"mirror bench: could not push to --origin: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mirror bench: interrupted", file=sys.stderr)
        return 130
    write_outputs(args, results)
    print(table(results))
    return 1 if results.errors else 0
