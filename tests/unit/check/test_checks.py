"""The checks catch what they check for: run against a "mirror" that caches nothing and
routes nothing (the counting proxy itself, forwarding to an in-process origin), the checks of
caching behaviour fail with the evidence that shows why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mirror.check.checks import ORDER
from mirror.check.suite import Settings, run_suite
from mirror.testing.registry import InProcessRegistry


@asynccontextmanager
async def no_cache(proxy_url: str) -> AsyncIterator[str]:
    """The proxy as its own target: every request reaches the origin."""
    yield proxy_url


async def test_a_pass_through_fails_the_caching_checks() -> None:
    async with InProcessRegistry().serve() as origin:
        settings = Settings(origin=origin, ns="origin", tag_ttl=0.1, layer_size=100_000)
        results = {r.name: r for r in await run_suite(settings, no_cache)}
    assert list(results) == [name for name, _ in ORDER]
    assert results["herd"].outcome == "fail"
    assert results["herd"].evidence["upstream_gets"] == 8
    assert results["ns-routing"].outcome == "fail"  # the unknown ns reached the origin
    assert results["ns-routing"].evidence["unknown_ns_upstream_requests"] == 1
    assert results["wrong-bytes"].evidence["completed_200_with_wrong_bytes"] is True
    assert results["tag-revalidation"].evidence["upstream_requests_within_ttl"] == 3
    assert results["stale-if-error"].outcome == "fail"  # nothing is served once it is down
    assert results["exact-headers"].outcome == "pass"  # the origin's headers are exact
    assert results["head-by-tag"].outcome == "pass"


async def test_the_deadline_turns_unfinished_checks_into_errors() -> None:
    async with InProcessRegistry().serve() as origin:
        settings = Settings(origin=origin, ns=None, layer_size=10_000, deadline=0.0)
        results = await run_suite(settings, no_cache)
    assert [r.outcome for r in results] == ["error"] * len(ORDER)
    assert results[0].summary == "global deadline reached"
