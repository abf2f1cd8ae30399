"""Scenario 11: ``mirror serve --workers 2`` (issue 15, item 5) against one worker and nginx
``sendfile``: ``worker_clients`` concurrent cold pulls of the large blob (one upstream GET
across the processes), the same number of concurrent warm pulls (aggregate throughput, CPU
summed over the supervisor and its workers), and tag ``HEAD`` latency with 16 connections."""

from __future__ import annotations

from benchmarks.bench import Bench, blob_gets, rotated
from benchmarks.clients import cpu_seconds, curl, curl_many, loadgen
from benchmarks.results import NGINX
from benchmarks.scenarios.manifests import ACCEPT
from benchmarks.scenarios.pushes import start_sink
from benchmarks.seed import INDEX_REPO, LARGE_REPO, TAG
from benchmarks.servers import MirrorServer, MirrorVariant

NUMBER = 11
TITLE = "Two worker processes (mirror serve --workers 2)"
WORKERS2 = "mirror, 2 workers"
WORKERS1 = "mirror, 1 worker"
# benchmarks.sink answers every HEAD at once from one raw asyncio protocol: the tag HEAD row
# against it is the load generator's own ceiling on this machine, in this run.
CEILING = "discard server (loadgen ceiling)"
CONNECTIONS = 16
# The console keeps sessions in one process's memory: more than one worker needs it off.
NO_CONSOLE = "[console]\nenabled = false\n"


def start_workers(bench: Bench, count: int) -> MirrorServer:
    """A fresh mirror with ``count`` workers, once the supervisor says all of them listen."""
    args = (*bench.settings.mirror_args, "--workers", str(count))
    label = WORKERS2 if count == 2 else f"mirror, {count} workers"
    server = bench.mirror(MirrorVariant(label, args, NO_CONSOLE))
    try:
        server.wait_for_log(f"({count} workers")
    except BaseException:
        bench.stop_mirror(server)
        raise
    return server


def run(bench: Bench) -> None:
    """Per repetition: the cold herd through a fresh 2-worker mirror, then warm pulls from it,
    from one worker and from nginx in rotating order, then the tag HEAD load (and the same
    load against the discard server)."""
    s = bench.settings
    sink = start_sink(bench)
    try:
        for rep in range(s.reps):
            _rep(bench, rep, sink.url)
    finally:
        sink.stop()


def _rep(bench: Bench, rep: int, sink_url: str) -> None:
    s = bench.settings
    two = start_workers(bench, 2)
    one = bench.mirror(MirrorVariant(WORKERS1, s.mirror_args, NO_CONSOLE))
    try:
        _cold(bench, two)
        urls = {
            NGINX: bench.nginx_url(bench.seeded.large.digest),
            WORKERS2: bench.blob_url(two.url, LARGE_REPO, bench.seeded.large.digest),
            WORKERS1: bench.blob_url(one.url, LARGE_REPO, bench.seeded.large.digest),
        }
        curl(urls[WORKERS1], s.transfer_timeout)  # warm the single worker's cache
        assert bench.nginx.process is not None
        pids = {NGINX: bench.nginx.process.pid, WORKERS2: two.pid, WORKERS1: one.pid}
        for label in rotated(list(urls), rep):
            _warm(bench, label, urls[label], pids[label])
        bases = [(WORKERS2, two.url), (WORKERS1, one.url), (CEILING, sink_url)]
        for label, base in rotated(bases, rep):
            _manifests(bench, label, base)
    finally:
        bench.stop_mirror(two)
        bench.stop_mirror(one)
    bench.progress(f"  rep {rep + 1}/{s.reps} done")


def _cold(bench: Bench, server: MirrorServer) -> None:
    """Every client at once on the cold blob: the kernel spreads the connections over both
    workers, the one that does not own the digest relays it from the owner."""
    s, r = bench.settings, bench.results
    digest, size = bench.seeded.large.digest, bench.seeded.large.size
    mark = bench.mark()
    wall, downloads = curl_many(
        bench.blob_url(server.url, LARGE_REPO, digest), s.worker_clients, s.transfer_timeout
    )
    gets = blob_gets(bench.settle(mark), digest)
    if any(d.size != size for d in downloads):
        raise RuntimeError("a cold download got the wrong number of bytes")
    case = f"{s.worker_clients} concurrent pulls, cold"
    r.add(NUMBER, case, WORKERS2, "wall time", "s", wall, higher_is_better=False)
    r.fact(
        NUMBER,
        WORKERS2,
        f"upstream GETs of the blob ({s.worker_clients} cold clients)",
        len(gets),
        1,
    )
    bench.progress(f"  cold: {len(gets)} upstream GET(s), {wall:.2f} s")


def _warm(bench: Bench, label: str, url: str, pid: int) -> None:
    s, r = bench.settings, bench.results
    size = bench.seeded.large.size
    case = f"{s.worker_clients} concurrent pulls, warm"
    before = cpu_seconds(pid)
    wall, downloads = curl_many(url, s.worker_clients, s.transfer_timeout)
    cpu = cpu_seconds(pid) - before
    if any(d.size != size for d in downloads):
        raise RuntimeError(f"{label}: a warm download got the wrong number of bytes")
    rate = s.worker_clients * size / wall / 1e6
    r.add(NUMBER, case, label, "aggregate throughput", "MB/s", rate, higher_is_better=True)
    r.add(NUMBER, case, label, "server cores busy", "cores", cpu / wall, higher_is_better=False)
    bench.progress(f"  {label}, {case}: {rate:.0f} MB/s, server CPU {cpu / wall:.2f} cores")


def _manifests(bench: Bench, label: str, base: str) -> None:
    s, r = bench.settings, bench.results
    url = f"{base}/v2/{INDEX_REPO}/manifests/{TAG}"
    # Each worker asks upstream for a cold tag once: a discarded pass over 16 connections
    # (spread over both workers by the kernel) warms them all before the measured one.
    loadgen(url, "HEAD", [ACCEPT], CONNECTIONS, 1.0, 0.0)
    out = loadgen(url, "HEAD", [ACCEPT], CONNECTIONS, s.load_duration, s.load_warmup)
    statuses, requests = out["statuses"], out["requests"]
    assert isinstance(statuses, dict) and isinstance(requests, int)
    if requests == 0:
        raise RuntimeError(f"{label}: no tag HEAD answered within {s.load_duration} s")
    r.fact(NUMBER, label, "tag HEAD non-200 answers", requests - int(statuses.get("200", 0)), 0)
    case = f"HEAD by tag, warm, {CONNECTIONS} conn"
    for metric, key, unit, higher in (
        ("p50", "p50_ms", "ms", False),
        ("p99", "p99_ms", "ms", False),
        ("requests/s", "rps", "req/s", True),
    ):
        value = out[key]
        assert isinstance(value, float)
        r.add(NUMBER, case, label, metric, unit, value, higher_is_better=higher)
