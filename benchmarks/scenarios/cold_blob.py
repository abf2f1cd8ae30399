"""Scenario 2: cold large-blob pull through a fresh mirror vs a fresh distribution proxy, with
the bytes each one fetched from upstream (from the upstream registry's access log)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.bench import Bench, blob_gets, proxy_blob_path, rotated
from benchmarks.clients import cpu_seconds, curl
from benchmarks.results import PROXY
from benchmarks.seed import LARGE_REPO

NUMBER = 2
TITLE = "Cold large-blob pull"
CASE = "large blob, cold"
MIRROR = "mirror"


def _once(bench: Bench, label: str) -> None:
    s = bench.settings
    digest, size = bench.seeded.large.digest, bench.seeded.large.size
    stop: Callable[[], None]
    cached: list[Path] = []
    if label == MIRROR:
        server = bench.mirror()
        url, pid = server.url, server.pid
        stop = lambda: bench.stop_mirror(server)  # noqa: E731
    else:
        proxy = bench.proxy()
        url, cached = proxy.url, [proxy_blob_path(proxy, digest)]
        assert proxy.pid is not None
        pid = proxy.pid
        stop = lambda: bench.stop_proxy(proxy)  # noqa: E731
    try:
        mark = bench.mark()
        before = cpu_seconds(pid)
        got = curl(bench.blob_url(url, LARGE_REPO, digest), s.transfer_timeout)
        during = cpu_seconds(pid) - before
        gets = blob_gets(bench.settle(mark, cached), digest)
        settled = cpu_seconds(pid) - before
    finally:
        stop()
    if got.size != size:
        raise RuntimeError(f"{label} sent {got.size} bytes of {size}")
    r = bench.results
    r.add(NUMBER, CASE, label, "throughput", "MB/s", got.rate / 1e6, higher_is_better=True)
    gib = size / 1024**3
    r.add(
        NUMBER,
        CASE,
        label,
        "server CPU per GiB, during the pull",
        "CPU-s",
        during / gib,
        higher_is_better=False,
    )
    r.add(
        NUMBER,
        CASE,
        label,
        "server CPU per GiB, incl. background work",
        "CPU-s",
        settled / gib,
        higher_is_better=False,
    )
    fetched = sum(e.size for e in gets)
    r.add(
        NUMBER,
        CASE,
        label,
        "upstream bytes / blob size",
        "x",
        fetched / size,
        higher_is_better=False,
    )
    r.fact(NUMBER, label, "upstream GETs of the blob", len(gets), 1 if label == MIRROR else None)
    r.fact(
        NUMBER,
        label,
        "upstream bytes / blob size",
        fetched / size,
        1.0 if label == MIRROR else None,
    )


def run(bench: Bench) -> None:
    """Each repetition pulls once through a fresh mirror and a fresh proxy, order alternating."""
    for rep in range(bench.settings.reps):
        for label in rotated([MIRROR, PROXY], rep):
            _once(bench, label)
        bench.progress(f"  rep {rep + 1}/{bench.settings.reps} done")
