"""Run the whole suite: start the counting proxy in front of the origin, have the target
mirror put in front of the proxy (by the caller's :data:`TargetStarter`), seed a random image
at the origin and run every check in order under one deadline."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import aiohttp

from mirror.check.checks import ORDER, Context
from mirror.check.proxy import CountingProxy
from mirror.check.report import CheckResult
from mirror.check.seed import seed

TargetStarter = Callable[[str], AbstractAsyncContextManager[str]]
"""Given the proxy's URL, a context that yields the URL of a mirror whose upstream it is."""


@dataclass(frozen=True)
class Settings:
    """How the suite runs: the origin, the target's ``?ns=`` name for it and tag TTL, sizes,
    the random seed, per-request timeout and the global deadline (seconds)."""

    origin: str
    ns: str | None
    tag_ttl: float = 1.0
    seed: int = 16
    layers: int = 5
    layer_size: int = 1 << 20
    timeout: float = 10.0
    deadline: float = 120.0
    proxy_port: int = 0


@asynccontextmanager
async def given_target(url: str) -> AsyncIterator[str]:
    """A :data:`TargetStarter` for a mirror someone else runs: yields ``url`` unchanged."""
    yield url


async def wait_ready(http: aiohttp.ClientSession, url: str, within: float) -> None:
    """Wait until ``GET URL/v2/`` answers (any status); raises ``TimeoutError``."""
    deadline = time.monotonic() + within
    while True:
        try:
            async with http.get(f"{url}/v2/", timeout=aiohttp.ClientTimeout(total=1)):
                return
        except (aiohttp.ClientError, TimeoutError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}/v2/ did not answer within {within:g} s") from None
            await asyncio.sleep(0.1)


async def run_suite(
    settings: Settings,
    start_target: TargetStarter,
    *,
    on_proxy: Callable[[str], None] = lambda url: None,
) -> list[CheckResult]:
    """Every check's result, in order; a check that overruns the deadline is an ``error``."""
    proxy = CountingProxy(settings.origin, timeout=settings.timeout)
    results: list[CheckResult] = []
    give_up = time.monotonic() + settings.deadline
    timeout = aiohttp.ClientTimeout(total=settings.timeout)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        proxy.serve(settings.proxy_port) as proxy_url,
    ):
        on_proxy(proxy_url)
        async with start_target(proxy_url) as target:
            await wait_ready(http, target, settings.timeout)
            rng = random.Random(settings.seed)
            image = await seed(
                http, settings.origin, rng, layers=settings.layers, size=settings.layer_size
            )
            ctx = Context(
                http,
                target.rstrip("/"),
                proxy,
                image,
                settings.ns,
                settings.tag_ttl,
                settings.timeout,
            )
            for name, check in ORDER:
                left = give_up - time.monotonic()
                try:
                    async with asyncio.timeout(max(left, 0.0)):
                        results.append(await check(ctx))
                except TimeoutError:
                    results.append(CheckResult(name, "error", "global deadline reached"))
    return results
