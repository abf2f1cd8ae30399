"""Scenario 4: manifest requests with a keep-alive load generator in its own process, with 1
and 16 connections: ``HEAD`` by tag (what containerd sends) warm within the TTL and with TTL 0,
and ``GET`` by digest; p50/p99 latency and requests/s."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.bench import Bench, rotated
from benchmarks.clients import loadgen
from benchmarks.results import PROXY, UPSTREAM
from benchmarks.seed import INDEX_REPO, TAG

NUMBER = 4
TITLE = "Manifest requests"
CONNECTIONS = (1, 16)
ACCEPT = (
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json, */*"
)
TAG_WARM = "HEAD by tag, warm (TTL 60 s)"
TAG_TTL0 = "HEAD by tag, TTL 0"
DIGEST = "GET by digest"
MIRROR = "mirror"
MIRROR_TTL0 = "mirror (TTL 0)"


@dataclass(frozen=True)
class Cell:
    """One case against one target."""

    case: str
    target: str
    base: str
    method: str
    reference: str


def run(bench: Bench) -> None:
    """Start one mirror with the default TTL, one with TTL 0 and a proxy; warm them; then run
    every (case, target) cell for each connection count, in rotating order."""
    s = bench.settings
    index = bench.seeded.index.digest
    mirror = bench.mirror()
    mirror0 = bench.mirror(tag_ttl=0)
    proxy = bench.proxy()
    try:
        cells = [
            Cell(TAG_WARM, MIRROR, mirror.url, "HEAD", TAG),
            Cell(TAG_WARM, PROXY, proxy.url, "HEAD", TAG),
            Cell(TAG_WARM, UPSTREAM, bench.upstream.url, "HEAD", TAG),
            Cell(TAG_TTL0, MIRROR_TTL0, mirror0.url, "HEAD", TAG),
            Cell(TAG_TTL0, PROXY, proxy.url, "HEAD", TAG),
            Cell(DIGEST, MIRROR, mirror.url, "GET", index),
            Cell(DIGEST, PROXY, proxy.url, "GET", index),
            Cell(DIGEST, UPSTREAM, bench.upstream.url, "GET", index),
        ]
        for rep in range(s.reps):
            for conns in CONNECTIONS:
                for cell in rotated(cells, rep):
                    _measure(bench, cell, conns, rep)
            bench.progress(f"  rep {rep + 1}/{s.reps} done")
    finally:
        bench.stop_mirror(mirror)
        bench.stop_mirror(mirror0)
        bench.stop_proxy(proxy)


def _measure(bench: Bench, cell: Cell, conns: int, rep: int) -> None:
    s, r = bench.settings, bench.results
    url = f"{cell.base}/v2/{INDEX_REPO}/manifests/{cell.reference}"
    out = loadgen(url, cell.method, [ACCEPT], conns, s.load_duration, s.load_warmup)
    case = f"{cell.case}, {conns} conn"
    statuses = out["statuses"]
    assert isinstance(statuses, dict)
    requests = out["requests"]
    assert isinstance(requests, int)
    ok = int(statuses.get("200", 0))
    r.fact(NUMBER, cell.target, "non-200 answers (per cell)", requests - ok, 0)
    for metric, key in (("p50", "p50_ms"), ("p99", "p99_ms")):
        value = out[key]
        assert isinstance(value, float)
        r.add(NUMBER, case, cell.target, metric, "ms", value, higher_is_better=False)
    rps = out["rps"]
    assert isinstance(rps, float)
    r.add(NUMBER, case, cell.target, "requests/s", "req/s", rps, higher_is_better=True)
    if rep == 0:
        quantiles = out["quantiles_ms"]
        assert isinstance(quantiles, list)
        r.latency_quantiles[f"{cell.case}|{cell.target}|{conns}"] = quantiles
