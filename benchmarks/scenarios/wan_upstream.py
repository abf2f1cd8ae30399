"""Scenario 13 (issue 15 item 4): the upstream behind a WAN-like link (``benchmarks/wan.py``,
20 ms each way, 100 MB/s shared per direction). Cold pulls of the large blob (curl) and of the
50-layer image (:mod:`benchmarks.imagepull`: the manifest by tag, then every blob in turn on one
keep-alive connection) straight from the upstream through the link, through a fresh mirror whose
upstream is the link, and through a fresh distribution proxy whose ``remoteurl`` is the link.
Reports each time and its ratio to the direct pull of the same repetition, the upstream requests
and bytes (from the upstream's access log) of the mirror and the proxy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench import Bench, proxy_blob_path, rotated
from benchmarks.clients import cpu_seconds, curl, image_pulls
from benchmarks.results import PROXY
from benchmarks.seed import LARGE_REPO, LAYERS_REPO, TAG
from benchmarks.servers import WanLink
from tests.peers.accesslog import AccessLogEntry

NUMBER = 13
TITLE = "WAN-like upstream (delay each way, shared rate)"
MIRROR = "mirror"
DIRECT = "upstream through the link (direct)"
TARGETS = (DIRECT, MIRROR, PROXY)
BLOB_CASE = "large blob, cold, over the WAN link"
IMAGE_CASE = "50-layer image, cold, over the WAN link"


@dataclass(frozen=True)
class Pull:
    """One cold pull: seconds, bytes the client got, the upstream's log of it, server CPU-s."""

    seconds: float
    received: int
    upstream: list[AccessLogEntry]
    cpu: float


@dataclass
class _Through:
    """Where a client pulls from for one target, and how to stop it afterwards."""

    base: str
    pid: int | None
    cached: list[Path]
    stop: Callable[[], None]


def _through(bench: Bench, link: WanLink, label: str, cached: list[str]) -> _Through:
    """A fresh mirror or proxy whose upstream is ``link``, or the link itself (direct)."""
    if label == MIRROR:
        server = bench.mirror(upstream_url=link.url)
        return _Through(server.url, server.pid, [], lambda: bench.stop_mirror(server))
    if label == PROXY:
        proxy = bench.proxy(remote_url=link.url)
        paths = [proxy_blob_path(proxy, d) for d in cached]
        return _Through(proxy.url, proxy.pid, paths, lambda: bench.stop_proxy(proxy))
    return _Through(link.url, None, [], lambda: None)


def _blob_pull(bench: Bench, link: WanLink, label: str) -> Pull:
    large = bench.seeded.large
    where = _through(bench, link, label, [large.digest])
    try:
        mark = bench.mark()
        before = cpu_seconds(where.pid) if where.pid else 0.0
        got = curl(bench.blob_url(where.base, LARGE_REPO, large.digest), _timeout(bench))
        log = bench.settle(mark, where.cached)
        cpu = cpu_seconds(where.pid) - before if where.pid else 0.0
    finally:
        where.stop()
    return Pull(got.seconds, got.size, log, cpu)


def _image_pull(bench: Bench, link: WanLink, label: str) -> Pull:
    where = _through(bench, link, label, [b.digest for b in bench.seeded.layers])
    try:
        mark = bench.mark()
        before = cpu_seconds(where.pid) if where.pid else 0.0
        summary = image_pulls(where.base, LAYERS_REPO, TAG, 1, True, _timeout(bench))
        log = bench.settle(mark, where.cached)
        cpu = cpu_seconds(where.pid) - before if where.pid else 0.0
    finally:
        where.stop()
    if summary["blobs"] != len(bench.seeded.layers):
        raise RuntimeError(f"{label}: {summary['blobs']} blobs of {len(bench.seeded.layers)}")
    return Pull(float(summary["wall"]), int(summary["bytes"]), log, cpu)


def _timeout(bench: Bench) -> float:
    return bench.settings.transfer_timeout


def _blob_bytes(entries: list[AccessLogEntry], digests: set[str]) -> int:
    """Bytes of blob GETs in ``entries`` for any of ``digests``."""
    return sum(
        e.size
        for e in entries
        if e.method == "GET" and any(f"/blobs/{d}" in e.path for d in digests)
    )


def _record(bench: Bench, case: str, label: str, pull: Pull, direct: float | None) -> None:
    """Time, ratio to direct; for the caches, upstream requests and bytes, and the facts."""
    r = bench.results
    if case == BLOB_CASE:
        blobs = {bench.seeded.large.digest}
        size = bench.seeded.large.size
    else:
        blobs = {b.digest for b in bench.seeded.layers}
        size = sum(b.size for b in bench.seeded.layers)
    r.add(NUMBER, case, label, "time", "s", pull.seconds, higher_is_better=False)
    r.fact(NUMBER, label, f"{case}: client bytes / content bytes", pull.received / size, 1.0)
    if direct is not None and label != DIRECT:
        r.add(
            NUMBER, case, label, "time ÷ direct", "x", pull.seconds / direct, higher_is_better=False
        )
    by_method: dict[str, int] = {}
    for e in pull.upstream:
        by_method[e.method] = by_method.get(e.method, 0) + 1
    for method, count in sorted(by_method.items()):
        r.add(NUMBER, case, label, f"upstream {method} requests", "", count, higher_is_better=False)
    if label == DIRECT:
        return
    fetched = _blob_bytes(pull.upstream, blobs) / size
    r.add(
        NUMBER, case, label, "upstream bytes / content bytes", "x", fetched, higher_is_better=False
    )
    r.add(NUMBER, case, label, "server CPU-s", "CPU-s", pull.cpu, higher_is_better=False)
    r.fact(
        NUMBER,
        label,
        f"{case}: upstream bytes / content bytes",
        fetched,
        1.0 if label == MIRROR else None,
    )


def _rep(bench: Bench, link: WanLink, rep: int) -> None:
    """One repetition: each case, its targets in rotating order, ratios to this rep's direct."""
    for case, pull in ((BLOB_CASE, _blob_pull), (IMAGE_CASE, _image_pull)):
        pulls = {label: pull(bench, link, label) for label in rotated(TARGETS, rep)}
        direct = pulls[DIRECT].seconds
        for label, done in pulls.items():
            _record(bench, case, label, done, direct)


def run(bench: Bench) -> None:
    """Start the link in front of the upstream, run the repetitions, stop it."""
    s = bench.settings
    link = WanLink(bench.upstream.host, s.wan_delay, s.wan_rate)
    link.start(bench.processes, bench.work / "wan-link.log")
    cpu_before = cpu_seconds(link.pid)
    try:
        for rep in range(s.reps):
            _rep(bench, link, rep)
            bench.progress(f"  rep {rep + 1}/{s.reps} done")
        bench.results.notes.append(
            f"Scenario 13: the WAN link ({s.wan_delay * 1e3:.0f} ms each way, "
            f"{s.wan_rate / 1e6:.0f} MB/s) used {cpu_seconds(link.pid) - cpu_before:.1f} CPU-s "
            "over the whole scenario."
        )
    finally:
        link.stop(bench.processes)
