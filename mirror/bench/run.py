"""A whole run: seed the origin when allowed, then for every target resolve the image, warm
it up once (unmeasured) and run each chosen workload; a workload that cannot run is noted."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import aiohttp

from mirror.bench import ops
from mirror.bench.image import Image, ImageRef
from mirror.bench.loops import Outcome, guarded
from mirror.bench.plan import Plan
from mirror.bench.push import seed_image
from mirror.bench.results import Results, machine
from mirror.bench.session import (
    Bench,
    DeadlineReached,
    FreshImage,
    NoProgress,
    ProgressFactory,
)
from mirror.bench.target import Target
from mirror.bench.workloads import WORKLOAD_FUNCTIONS, Skip
from mirror.check.seed import SeedError
from mirror.clock import Clock, SystemClock

WARMED = frozenset({"pull", "blob", "range", "manifest", "sweep"})


@dataclass
class Sources:
    """Where images come from: a given one, an origin to push fresh ones to (only with
    permission), and images known not to be cached."""

    image: ImageRef | None = None
    origin: Target | None = None
    cold_images: list[ImageRef] = field(default_factory=list)


def _fresh_images(origin: Target, plan: Plan, rng: random.Random) -> FreshImage:
    async def fresh() -> ImageRef:
        """A new image at the origin; :class:`SeedError` if refused or unreachable."""
        try:
            async with origin.session(4) as http:
                return await seed_image(http, origin, rng, layers=plan.layers, size=plan.layer_size)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise SeedError(f"{origin.url}: {error}") from error

    return fresh


async def _prepare(bench: Bench) -> None:
    if bench.image is None:
        return
    image, plan = bench.image, bench.plan
    async with bench.target.session(plan.pull_concurrency) as http:
        found: list[Image] = []

        async def resolve() -> Outcome:
            outcome, resolved = await ops.resolve(http, bench.target, image)
            found.extend([resolved] if resolved else [])
            return outcome

        outcome = await guarded(resolve)
        bench.resolved = found[0] if found else None
        if bench.resolved is None:
            bench.notes.append(f"{bench.target.label}: {image} unresolved: {outcome.error}")
        elif plan.warmup and WARMED & set(plan.workloads):
            await guarded(lambda: ops.pull(http, bench.target, image, plan.pull_concurrency))


async def run_bench(
    targets: list[Target],
    plan: Plan,
    sources: Sources,
    *,
    clock: Clock | None = None,
    progress: ProgressFactory = lambda label, total: NoProgress(),
) -> Results:
    """Run ``plan`` against every target in turn (the first is the baseline of ratios)."""
    clock = clock or SystemClock()
    rng = random.Random(plan.seed)
    results = Results(
        targets={target.label: target.url for target in targets},
        plan={k: v for k, v in asdict(plan).items()},
        machine=machine(),
        started=datetime.fromtimestamp(clock.now(), UTC).isoformat(timespec="seconds"),
    )
    stop_at = clock.monotonic() + plan.deadline
    fresh = None
    image = sources.image
    if sources.origin is not None and plan.allow_push:
        fresh = _fresh_images(sources.origin, plan, rng)
        if image is None:
            image = await fresh()
    for target in targets:
        bench = Bench(
            target,
            plan,
            clock,
            progress,
            image=image,
            fresh=fresh,
            cold_images=list(sources.cold_images),
            rng=random.Random(plan.seed),
            stop_at=stop_at,
        )
        await _prepare(bench)
        for name in plan.workloads:
            try:
                await WORKLOAD_FUNCTIONS[name](bench)
            except Skip as skipped:
                bench.notes.append(f"{target.label} {name}: skipped: {skipped}")
            except DeadlineReached:
                bench.notes.append(f"{target.label} {name}: cut short: --deadline reached")
            except SeedError as refused:
                bench.notes.append(f"{target.label} {name}: skipped: origin refused: {refused}")
        results.rows.extend(bench.rows)
        results.notes.extend(bench.notes)
    return results
