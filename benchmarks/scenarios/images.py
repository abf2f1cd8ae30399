"""Scenario 5: whole-image pulls of the 50-layer image by real clients, ``skopeo copy`` to a
``dir:`` and ``ctr content fetch`` with a brand-new containerd, cold and warm, through the
mirror and the distribution proxy, and straight from the upstream for reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.bench import Bench, proxy_blob_path, rotated
from benchmarks.clients import ctr_fetch, skopeo_pull
from benchmarks.results import PROXY, UPSTREAM
from benchmarks.seed import LAYERS_REPO, TAG

NUMBER = 5
TITLE = "Whole-image pulls (50 layers)"
MIRROR = "mirror"
TARGETS = (MIRROR, PROXY, UPSTREAM)


def _pull(bench: Bench, client: str, host: str, tag: str) -> float:
    ref = f"{host}/{LAYERS_REPO}:{TAG}"
    if client == "skopeo copy":
        return skopeo_pull(ref, bench.work / f"skopeo-out-{tag}")
    seconds, count = ctr_fetch(ref, bench.work / f"ctr-{tag}")
    # manifest + config + layers
    expected = len(bench.seeded.layers) + 1
    if count != expected:
        raise RuntimeError(f"ctr fetched {count} objects, expected {expected}")
    return seconds


def _blob_gets(bench: Bench, mark: int) -> int:
    digests = {b.digest for b in bench.seeded.layers}
    return sum(
        1
        for e in bench.upstream_since(mark)
        if e.method == "GET" and any(f"/blobs/{d}" in e.path for d in digests)
    )


def _target(bench: Bench, client: str, label: str) -> None:
    """A cold then a warm pull through a fresh cache (two pulls from upstream for its row)."""
    stop: Callable[[], None]
    cached: list[Path] = []
    if label == MIRROR:
        server = bench.mirror()
        host = server.host
        stop = lambda: bench.stop_mirror(server)  # noqa: E731
    elif label == PROXY:
        proxy = bench.proxy()
        host = proxy.host
        cached = [proxy_blob_path(proxy, b.digest) for b in bench.seeded.layers]
        stop = lambda: bench.stop_proxy(proxy)  # noqa: E731
    else:
        host, stop = bench.upstream.host, lambda: None
    try:
        mark = bench.mark()
        cold = _pull(bench, client, host, "cold")
        bench.settle(mark, cached)
        cold_gets = _blob_gets(bench, mark)
        mark = bench.mark()
        warm = _pull(bench, client, host, "warm")
        warm_gets = _blob_gets(bench, mark)
    finally:
        stop()
    r = bench.results
    r.add(NUMBER, f"{client}, cold", label, "time", "s", cold, higher_is_better=False)
    r.add(NUMBER, f"{client}, warm", label, "time", "s", warm, higher_is_better=False)
    if label == MIRROR:
        blobs = len(bench.seeded.layers)
        r.fact(NUMBER, label, f"{client}, cold: upstream blob GETs", cold_gets, blobs)
        r.fact(NUMBER, label, f"{client}, warm: upstream blob GETs", warm_gets, 0)


def run(bench: Bench) -> None:
    """Per repetition and client: each target in rotating order."""
    reps = bench.settings.image_reps
    for rep in range(reps):
        for client in ("skopeo copy", "ctr content fetch"):
            for label in rotated(TARGETS, rep):
                _target(bench, client, label)
        bench.progress(f"  rep {rep + 1}/{reps} done")
