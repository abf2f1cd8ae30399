"""Scenario 1: warm large-blob pull, curl to /dev/null: every mirror variant vs the
distribution proxy (warm), the upstream registry itself and nginx ``sendfile``."""

from __future__ import annotations

from benchmarks.bench import Bench, proxy_blob_path, rotated
from benchmarks.clients import cpu_seconds, curl
from benchmarks.results import NGINX, PROXY, UPSTREAM
from benchmarks.seed import LARGE_REPO
from benchmarks.servers import mirror_variants

NUMBER = 1
TITLE = "Warm large-blob pull (curl to /dev/null)"
CASE = "large blob, warm"
GiB = 1024**3


def run(bench: Bench) -> None:
    """Warm each cache with one pull, then pull from every target in rotating order."""
    s = bench.settings
    digest = bench.seeded.large.digest
    proxy = bench.proxy()
    mirrors = [bench.mirror(v) for v in mirror_variants(s.mirror_args)]
    try:
        urls = {
            NGINX: bench.nginx_url(digest),
            UPSTREAM: bench.blob_url(bench.upstream.url, LARGE_REPO, digest),
            PROXY: bench.blob_url(proxy.url, LARGE_REPO, digest),
        }
        assert bench.nginx.process is not None and bench.upstream.pid and proxy.pid
        pids = {NGINX: bench.nginx.process.pid, UPSTREAM: bench.upstream.pid, PROXY: proxy.pid}
        for server in mirrors:
            urls[server.variant.label] = bench.blob_url(server.url, LARGE_REPO, digest)
            pids[server.variant.label] = server.pid
        mark = bench.mark()
        for label, url in urls.items():
            if label not in (NGINX, UPSTREAM):
                curl(url, s.transfer_timeout)
        bench.settle(mark, [proxy_blob_path(proxy, digest)])
        for rep in range(s.warm_reps):
            for label in rotated(list(urls), rep):
                before = cpu_seconds(pids[label])
                got = curl(urls[label], s.transfer_timeout)
                cpu = cpu_seconds(pids[label]) - before
                if got.size != bench.seeded.large.size:
                    raise RuntimeError(f"{label} sent {got.size} bytes, expected the blob size")
                r = bench.results
                r.add(
                    NUMBER, CASE, label, "throughput", "MB/s", got.rate / 1e6, higher_is_better=True
                )
                r.add(
                    NUMBER,
                    CASE,
                    label,
                    "server CPU per GiB",
                    "CPU-s",
                    cpu / (got.size / GiB),
                    higher_is_better=False,
                )
            bench.progress(f"  rep {rep + 1}/{s.warm_reps} done")
    finally:
        for server in mirrors:
            bench.stop_mirror(server)
        bench.stop_proxy(proxy)
