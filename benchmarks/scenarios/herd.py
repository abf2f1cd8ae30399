"""Scenario 3: ``herd`` concurrent cold pulls of one large blob: exactly one upstream GET, and
the wall time against one cold pull through a fresh mirror in the same repetition."""

from __future__ import annotations

from benchmarks.bench import Bench, blob_gets, proxy_blob_path
from benchmarks.clients import RssSampler, curl, curl_many, ranged_pull
from benchmarks.results import PROXY
from benchmarks.seed import LARGE_REPO

NUMBER = 3
TITLE = "Concurrent cold pulls of one blob"
MIRROR = "mirror"
RANGED = "chunked parallel Range, cold"
# containerd 2.1's parallel unpack / SOCI: 8 MiB pieces, 8 in flight.
PIECE = 8 * 1024 * 1024
WORKERS = 8


def run(bench: Bench) -> None:
    """Per repetition: one cold pull, then the herd, each through a fresh mirror; the proxy's
    herd once, as a reference for upstream GETs."""
    s, r = bench.settings, bench.results
    digest, size = bench.seeded.large.digest, bench.seeded.large.size
    case = f"{s.herd} concurrent cold pulls"
    for rep in range(s.reps):
        single = bench.mirror()
        try:
            one = curl(bench.blob_url(single.url, LARGE_REPO, digest), s.transfer_timeout)
        finally:
            bench.stop_mirror(single)
        server = bench.mirror()
        try:
            mark = bench.mark()
            with RssSampler(server.pid) as rss:
                wall, downloads = curl_many(
                    bench.blob_url(server.url, LARGE_REPO, digest), s.herd, s.transfer_timeout
                )
            gets = blob_gets(bench.settle(mark), digest)
        finally:
            bench.stop_mirror(server)
        if any(d.size != size for d in downloads):
            raise RuntimeError("a herd download got the wrong number of bytes")
        r.add(NUMBER, "1 cold pull", MIRROR, "wall time", "s", one.seconds, higher_is_better=False)
        r.add(NUMBER, case, MIRROR, "wall time", "s", wall, higher_is_better=False)
        r.add(
            NUMBER,
            case,
            MIRROR,
            "wall time / 1 cold pull",
            "x",
            wall / one.seconds,
            higher_is_better=False,
        )
        r.add(
            NUMBER,
            case,
            MIRROR,
            "aggregate throughput",
            "MB/s",
            s.herd * size / wall / 1e6,
            higher_is_better=True,
        )
        r.add(NUMBER, case, MIRROR, "peak RSS", "MiB", rss.peak / 1024, higher_is_better=False)
        r.fact(NUMBER, MIRROR, f"upstream GETs of the blob ({s.herd} clients)", len(gets), 1)
        _ranged(bench, one.seconds)
        bench.progress(
            f"  rep {rep + 1}/{s.reps}: {wall:.2f} s for {s.herd}, 1 pull {one.seconds:.2f} s"
        )
    _proxy_herd(bench, case)


def _ranged(bench: Bench, one_pull: float) -> None:
    """The blob in ``PIECE`` ranges, ``WORKERS`` at a time, through a fresh mirror: one
    upstream GET, every piece right, wall time against one cold full pull."""
    s, r = bench.settings, bench.results
    digest, size = bench.seeded.large.digest, bench.seeded.large.size
    server = bench.mirror()
    try:
        mark = bench.mark()
        url = bench.blob_url(server.url, LARGE_REPO, digest)
        pull = ranged_pull(url, size, PIECE, WORKERS, s.transfer_timeout)
        gets = blob_gets(bench.settle(mark), digest)
    finally:
        bench.stop_mirror(server)
    wall, whole = pull.seconds, pull.digest
    r.add(NUMBER, RANGED, MIRROR, "wall time", "s", wall, higher_is_better=False)
    r.add(NUMBER, RANGED, MIRROR, "throughput", "MB/s", size / wall / 1e6, higher_is_better=True)
    r.add(
        NUMBER,
        RANGED,
        MIRROR,
        "wall time / 1 cold pull",
        "x",
        wall / one_pull,
        higher_is_better=False,
    )
    # The first wave completes when the fill verified (pull-through.md: ranges of a blob still
    # filling); everything after it is served warm: the split says which part costs what.
    r.add(
        NUMBER,
        RANGED,
        MIRROR,
        "first wave / 1 cold pull",
        "x",
        pull.first_wave / one_pull,
        higher_is_better=False,
    )
    r.add(
        NUMBER,
        RANGED,
        MIRROR,
        "after the first wave (warm)",
        "s",
        wall - pull.first_wave,
        higher_is_better=False,
    )
    r.fact(NUMBER, MIRROR, "upstream GETs of the blob (chunked Range)", len(gets), 1)
    r.fact(NUMBER, MIRROR, "chunked Range pieces assemble to the digest", float(whole == digest), 1)
    bench.progress(
        f"  chunked Range: {wall:.2f} s (first wave {pull.first_wave:.2f} s), "
        f"1 pull {one_pull:.2f} s"
    )


def _proxy_herd(bench: Bench, case: str) -> None:
    s, r = bench.settings, bench.results
    digest, size = bench.seeded.large.digest, bench.seeded.large.size
    proxy = bench.proxy()
    try:
        mark = bench.mark()
        wall, _ = curl_many(
            bench.blob_url(proxy.url, LARGE_REPO, digest), s.herd, s.transfer_timeout
        )
        gets = blob_gets(bench.settle(mark, [proxy_blob_path(proxy, digest)]), digest)
    finally:
        bench.stop_proxy(proxy)
    r.add(NUMBER, case, PROXY, "wall time", "s", wall, higher_is_better=False)
    r.add(
        NUMBER,
        case,
        PROXY,
        "aggregate throughput",
        "MB/s",
        s.herd * size / wall / 1e6,
        higher_is_better=True,
    )
    r.fact(NUMBER, PROXY, f"upstream GETs of the blob ({s.herd} clients)", len(gets))
    r.fact(NUMBER, PROXY, "upstream bytes / blob size", sum(e.size for e in gets) / size)
    bench.progress(f"  proxy: {wall:.2f} s for {s.herd}, {len(gets)} upstream GETs")
