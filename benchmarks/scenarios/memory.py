"""Scenario 6: peak RSS of the mirror process while ``memory_clients`` clients pull the large
blob at once, cold (all joining one fill) and warm; the distribution proxy's for reference."""

from __future__ import annotations

from benchmarks.bench import Bench, proxy_blob_path
from benchmarks.clients import RssSampler, curl, curl_many, proc_status_kib
from benchmarks.results import PROXY
from benchmarks.seed import LARGE_REPO

NUMBER = 6
TITLE = "Memory under concurrent large pulls"
MIRROR = "mirror"


def _sample(bench: Bench, pid: int, url: str, case: str, label: str) -> None:
    s, r = bench.settings, bench.results
    with RssSampler(pid) as rss:
        wall, downloads = curl_many(url, s.memory_clients, s.transfer_timeout)
    if any(d.size != bench.seeded.large.size for d in downloads):
        raise RuntimeError(f"{label}: a download got the wrong number of bytes")
    r.add(NUMBER, case, label, "peak RSS", "MiB", rss.peak / 1024, higher_is_better=False)
    r.add(
        NUMBER,
        case,
        label,
        "aggregate throughput",
        "MB/s",
        len(downloads) * bench.seeded.large.size / wall / 1e6,
        higher_is_better=True,
    )


def run(bench: Bench) -> None:
    """Per repetition: a fresh mirror pulled cold by all clients at once, then warm; a warm
    proxy once."""
    s, r = bench.settings, bench.results
    digest = bench.seeded.large.digest
    n = s.memory_clients
    for rep in range(s.reps):
        server = bench.mirror()
        try:
            url = bench.blob_url(server.url, LARGE_REPO, digest)
            r.add(
                NUMBER,
                "idle after start",
                MIRROR,
                "RSS",
                "MiB",
                proc_status_kib(server.pid, "VmRSS") / 1024,
                higher_is_better=False,
            )
            _sample(bench, server.pid, url, f"{n} concurrent pulls, cold", MIRROR)
            _sample(bench, server.pid, url, f"{n} concurrent pulls, warm", MIRROR)
            hwm = proc_status_kib(server.pid, "VmHWM") / 1024
            r.add(
                NUMBER, "whole run (VmHWM)", MIRROR, "peak RSS", "MiB", hwm, higher_is_better=False
            )
        finally:
            bench.stop_mirror(server)
        bench.progress(f"  rep {rep + 1}/{s.reps}: mirror VmHWM {hwm:.0f} MiB")
    proxy = bench.proxy()
    try:
        assert proxy.pid is not None
        url = bench.blob_url(proxy.url, LARGE_REPO, digest)
        mark = bench.mark()
        curl(url, s.transfer_timeout)
        bench.settle(mark, [proxy_blob_path(proxy, digest)])
        _sample(bench, proxy.pid, url, f"{n} concurrent pulls, warm", PROXY)
    finally:
        bench.stop_proxy(proxy)
