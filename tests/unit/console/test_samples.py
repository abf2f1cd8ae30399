import asyncio

import pytest

from mirror.clock import ManualClock
from mirror.console.chart import Series, chart, rates
from mirror.console.samples import Sample, SampleRing, sample, sample_periodically
from mirror.metrics import Metrics


def test_a_sample_reads_the_mirrors_own_metrics() -> None:
    metrics = Metrics()
    metrics.cache_hits.labels("blob").inc(3)
    metrics.cache_misses.labels("manifest").inc(1)
    metrics.bytes_from_cache.inc(1000)
    metrics.bytes_from_upstream.inc(250)
    metrics.fills_in_progress.set(2)
    metrics.evictions.labels("run", "not-pulled").inc(4)
    metrics.upstream_requests.labels("docker.io", "GET", "200").inc(5)
    metrics.upstream_requests.labels("docker.io", "GET", "503").inc(2)
    metrics.upstream_requests.labels("quay.io", "GET", "429").inc(1)
    taken = sample(metrics.registry, 42.0, disk_used=10.0, capacity=100.0)
    assert taken.hit_ratio == 0.75
    assert (taken.bytes_from_cache, taken.bytes_from_upstream) == (1000, 250)
    assert (taken.fills_in_progress, taken.evictions, taken.disk_used) == (2, 4, 10)
    figures = {u.host: (u.requests, u.errors) for u in taken.upstreams}
    assert figures == {"docker.io": (7, 2), "quay.io": (1, 1)}


def test_no_requests_means_no_hit_ratio() -> None:
    assert sample(Metrics().registry, 0.0, 0.0, 0.0).hit_ratio is None


def test_the_ring_keeps_only_the_newest_samples() -> None:
    ring = SampleRing(3)
    for at in range(5):
        ring.record(Sample(float(at), 0, 0, 0, 0, 0, 0, 0, 0, ()))
    assert [s.at for s in ring] == [2.0, 3.0, 4.0]
    assert ring.latest() is not None and ring.latest().at == 4.0  # type: ignore[union-attr]


async def test_sampling_runs_on_the_interval_of_the_clock_passed_in() -> None:
    clock, ring, metrics = ManualClock(), SampleRing(10), Metrics()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        metrics.bytes_from_cache.inc(100)
        clock.advance(seconds)
        if len(slept) == 3:
            raise asyncio.CancelledError

    read = lambda at: sample(metrics.registry, at, 0.0, 0.0)  # noqa: E731
    with pytest.raises(asyncio.CancelledError):
        await sample_periodically(ring, read, clock, 10.0, sleep)
    taken = list(ring)
    assert [s.at - taken[0].at for s in taken] == [0.0, 10.0, 20.0]
    assert [s.bytes_from_cache for s in taken] == [0.0, 100.0, 200.0]
    assert rates([(s.at, s.bytes_from_cache) for s in taken]) == (
        (taken[1].at, 10.0),
        (taken[2].at, 10.0),
    )


def test_a_counter_reset_is_no_negative_rate() -> None:
    assert rates([(0.0, 50.0), (10.0, 0.0)]) == ((10.0, 0.0),)


def test_chart_scales_lines_into_the_box() -> None:
    drawn = chart([Series("a", "#000", ((0.0, 0.0), (10.0, 5.0)))])
    assert drawn["top"] == 5.0 and not drawn["empty"]
    assert drawn["lines"] == [("a", "#000", "0.0,140.0 600.0,0.0", "none")]
    assert chart([Series("a", "#000", ((0.0, 1.0),))])["empty"]


def test_each_upstream_gets_a_requests_line_and_a_dashed_errors_line() -> None:
    from mirror.console.samples import Sample, UpstreamFigures
    from mirror.console.views.cache import upstream_series

    def at(t: float, *ups: UpstreamFigures) -> Sample:
        return Sample(t, 0, 0, 0, 0, 0, 0, 0, 0, ups)

    history = [
        at(0.0, UpstreamFigures("a.io", 0, 0)),
        at(10.0, UpstreamFigures("a.io", 20, 5), UpstreamFigures("b.io", 10, 0)),
    ]
    lines = {s.name: s for s in upstream_series(history)}
    assert lines["a.io requests/s"].points == ((10.0, 2.0),)
    assert lines["a.io errors/s"].points == ((10.0, 0.5),) and lines["a.io errors/s"].dashed
    assert lines["b.io requests/s"].points == ((10.0, 1.0),)  # absent before: counted from 0
