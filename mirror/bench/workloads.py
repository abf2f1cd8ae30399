"""The workloads, one function each, that add rows to a :class:`~mirror.bench.session.Bench`.
Each says in its docstring what it measures; ``NEEDS`` says what it needs to run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from mirror.bench import ops
from mirror.bench.image import Image, ImageRef
from mirror.bench.loops import Outcome, guarded
from mirror.bench.push import push_chunked, push_monolithic
from mirror.bench.session import Bench, DeadlineReached, MakeOperation
from mirror.bench.stats import Sample

Workload = Callable[[Bench], Awaitable[None]]


async def pull(bench: Bench) -> None:
    """Whole-image pulls one after another: the manifest by tag, then the config and layers
    ``pull_concurrency`` at a time (3 is containerd's default)."""
    ref, plan = _image(bench), bench.plan
    await bench.measure(
        "pull",
        f"{ref} x{plan.pull_concurrency}",
        lambda http: lambda: ops.pull(http, bench.target, ref, plan.pull_concurrency),
        count=plan.pulls,
        workers=1,
        connections=plan.pull_concurrency,
    )


async def blob(bench: Bench) -> None:
    """GETs of the image's largest layer over ``connections`` keep-alive connections: bytes
    per second, hashed as they arrive."""
    image, plan = _resolved(bench), bench.plan
    layer = max(image.layers or image.blobs, key=lambda b: b.size)
    await bench.measure(
        "blob",
        f"GET {layer.size} B",
        lambda http: lambda: ops.blob(http, bench.target, image.repo, layer),
        count=plan.requests,
        workers=plan.connections,
        open_loop=plan.mode("blob") == "open",
    )


async def ranged(bench: Bench) -> None:
    """The largest layer fetched as ``range_parallel`` concurrent ``chunk``-byte ranges and
    reassembled, as containerd 2.1 does for big layers; one sample per whole layer."""
    image, plan = _resolved(bench), bench.plan
    layer = max(image.layers or image.blobs, key=lambda b: b.size)
    await bench.measure(
        "range",
        f"{plan.range_parallel}x{plan.chunk} B of {layer.size} B",
        lambda http: (
            lambda: ops.ranged_blob(
                http,
                bench.target,
                image.repo,
                layer,
                chunk=plan.chunk,
                parallel=plan.range_parallel,
            )
        ),
        count=plan.pulls,
        workers=1,
        connections=plan.range_parallel,
    )


def _manifest_op(bench: Bench, repo: str, reference: str, method: str) -> MakeOperation:
    async def once(http: aiohttp.ClientSession) -> Outcome:
        outcome, _, _ = await ops.manifest(http, bench.target, repo, reference, method)
        return outcome

    return lambda http: lambda: once(http)


async def manifest(bench: Bench) -> None:
    """``HEAD`` and ``GET`` of the manifest by tag (what a node asks on every pull; a mirror
    may revalidate it upstream) and by digest (always cacheable), over ``connections``
    keep-alive connections, closed loop or at ``--rate`` (open loop). Without a resolved
    image only the by-tag cases run."""
    ref, plan = _image(bench), bench.plan
    cases = [("tag", ref.reference)]
    if bench.resolved is not None:
        cases.append(("digest", bench.resolved.digest))
    else:
        bench.notes.append(f"{bench.target.label} manifest: by digest skipped (unresolved)")
    for method in ("HEAD", "GET"):
        for kind, reference in cases:
            await bench.measure(
                "manifest",
                f"{method} by {kind}",
                _manifest_op(bench, ref.repo, reference, method),
                count=plan.requests,
                workers=plan.connections,
                open_loop=plan.mode("manifest") == "open",
            )


async def sweep(bench: Bench) -> None:
    """Manifest GETs by tag at each concurrency of ``--sweep`` (1 ... 64 clients, a
    connection each): where throughput stops growing and latency starts to."""
    ref, plan = _image(bench), bench.plan
    for clients in plan.sweep:
        await bench.measure(
            "sweep",
            f"c={clients}",
            _manifest_op(bench, ref.repo, ref.reference, "GET"),
            count=max(plan.requests, clients),
            workers=clients,
        )


async def push(bench: Bench) -> None:
    """Blob pushes of ``push_size`` random bytes to ``push_repo`` of the target, monolithic
    (``POST`` + ``PUT``) and chunked (``POST``, ``PATCH`` x n, ``PUT``), as zot's zb does."""
    plan, target, rng = bench.plan, bench.target, bench.rng

    def monolithic(http: aiohttp.ClientSession) -> Callable[[], Awaitable[Outcome]]:
        return lambda: push_monolithic(http, target, plan.push_repo, rng.randbytes(plan.push_size))

    def chunked(http: aiohttp.ClientSession) -> Callable[[], Awaitable[Outcome]]:
        return lambda: push_chunked(
            http, target, plan.push_repo, rng.randbytes(plan.push_size), plan.push_chunk
        )

    for case, make in (("monolithic", monolithic), ("chunked", chunked)):
        await bench.measure(
            "push",
            f"{case} {plan.push_size} B",
            make,
            count=plan.requests,
            workers=plan.connections,
        )


async def rollout(bench: Bench) -> None:
    """A cluster's rolling update: ``clients`` nodes pull the same image at the same moment
    (a new one pushed to the origin when it can, so the mirror is cold and must coalesce)."""
    plan = bench.plan
    ref = await bench.fresh() if bench.fresh is not None else _image(bench)
    kind = "new image" if bench.fresh is not None else "cached image"
    await bench.measure(
        "rollout",
        f"{plan.clients} nodes, {kind}",
        lambda http: lambda: ops.pull(http, bench.target, ref, plan.pull_concurrency),
        count=plan.clients,
        workers=plan.clients,
        connections=plan.clients * plan.pull_concurrency,
    )


async def cold(bench: Bench) -> None:
    """Each image pulled through the target twice: first cold (never cached: fresh ones
    pushed to ``--origin``, or ``--cold-images``), then warm."""
    plan = bench.plan
    refs = list(bench.cold_images)
    if bench.fresh is not None:
        refs = [await bench.fresh() for _ in range(plan.pulls)]
    if not refs:
        raise Skip("cold needs --origin with --allow-push, or --cold-images FILE")
    cold_samples: list[Sample] = []
    warm_samples: list[Sample] = []
    async with bench.target.session(plan.pull_concurrency) as http:
        for ref in refs:
            try:
                bench.time_left()
            except DeadlineReached:
                bench.notes.append(f"{bench.target.label} cold: stopped at --deadline")
                break
            for samples in (cold_samples, warm_samples):
                samples.append(await _timed(bench, http, ref))
    bench.record("cold", "cold pull", cold_samples, len(refs), plan.pull_concurrency)
    bench.record("cold", "warm pull", warm_samples, len(refs), plan.pull_concurrency)


async def _timed(bench: Bench, http: aiohttp.ClientSession, ref: ImageRef) -> Sample:
    concurrency = bench.plan.pull_concurrency
    started = bench.clock.monotonic()
    outcome = await guarded(lambda: ops.pull(http, bench.target, ref, concurrency))
    return Sample(bench.clock.monotonic() - started, outcome.size, outcome.error)


class Skip(Exception):
    """A workload that cannot run here (says why)."""


def _image(bench: Bench) -> ImageRef:
    if bench.image is None:
        raise Skip("no image: give --image, or --origin with --allow-push")
    return bench.image


def _resolved(bench: Bench) -> Image:
    if bench.resolved is None:
        raise Skip("the image could not be resolved")
    return bench.resolved


WORKLOAD_FUNCTIONS: dict[str, Workload] = {
    "pull": pull,
    "blob": blob,
    "range": ranged,
    "manifest": manifest,
    "sweep": sweep,
    "push": push,
    "rollout": rollout,
    "cold": cold,
}
