"""Scenario 12: per-upstream limits (issue 15, item 6). A fresh mirror with
``max_connections = 4`` for the upstream and tag TTL 0 (so every tag ``HEAD`` is revalidated
upstream, through the metadata lane) answers tag ``HEAD``\\ s from the load generator, first
idle, then while 8 cold fills of distinct large blobs run. Facts, measured at the upstream:
never more than 4 requests in flight (its own log) nor 4 TCP connections (``/proc/net/tcp``),
never more than 3 blob transfers (one slot is the metadata lane's), and each blob fetched once.

Beside the mirror, in the same phases, the same HEAD load goes straight to the upstream (what
one revalidation costs at least) and to the discard server (``benchmarks/sink.py``: what the
load generator can measure on this machine while the fills load it): the references that say
how much of a p99 is the mirror's own."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable
from contextlib import nullcontext
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.bench import Bench, blob_gets, rotated
from benchmarks.clients import Download, curl_each, loadgen, push_blobs
from benchmarks.inflight import ConnectionSampler, parse_served, peak_overlap, read_from
from benchmarks.loadgen import USER_AGENT as LOADGEN_AGENT
from benchmarks.scenarios.manifests import ACCEPT
from benchmarks.scenarios.pushes import start_sink
from benchmarks.seed import INDEX_REPO, TAG
from benchmarks.servers import MirrorServer, MirrorVariant

NUMBER = 12
TITLE = "Tag HEAD during cold fills under a 4-connection cap"
LABEL = "mirror, max_connections = 4"
UPSTREAM = "upstream (direct)"
CEILING = "discard server (loadgen ceiling)"
CAP = 4
FILLS = 8
CONNECTIONS = (1, 16)
LANES_REPO = "bench/lanes"
# Salts of the pushed blobs: distinct from scenario 8's pushes (0...).
SALT = 12_000


def idle_case(conns: int) -> str:
    """The case of tag HEADs with nothing else running."""
    return f"HEAD by tag, TTL 0, {conns} conn, idle"


def during_case(conns: int) -> str:
    """The case of tag HEADs while the cold fills run."""
    return f"HEAD by tag, TTL 0, {conns} conn, during {FILLS} cold fills"


def run(bench: Bench) -> None:
    """Push the blobs upstream once; per repetition, a fresh capped mirror, the idle HEAD
    load, then the fills with the HEAD load beside them."""
    s = bench.settings
    pushed = push_blobs(
        bench.upstream.url,
        LANES_REPO,
        s.large_size,
        concurrency=FILLS,
        salt=SALT,
        verify=False,
        timeout=s.transfer_timeout,
    )
    bench.progress(f"  pushed {FILLS} blobs of {s.large_size} bytes to {LANES_REPO}")
    variant = MirrorVariant(LABEL, s.mirror_args, upstream_toml=f"max_connections = {CAP}\n")
    sink = start_sink(bench)
    try:
        for rep in range(s.reps):
            server = bench.mirror(variant, tag_ttl=0)
            bases = {LABEL: server.url, UPSTREAM: bench.upstream.url, CEILING: sink.url}
            try:
                _once(bench, server, bases, pushed.digests, rep)
            finally:
                bench.stop_mirror(server)
            bench.progress(f"  rep {rep + 1}/{s.reps} done")
    finally:
        sink.stop()


def _heads(bench: Bench, base: str, conns: int, case: str | None, label: str = LABEL) -> bool:
    """One load-generator cell of tag HEADs to ``base``, recorded under ``case`` and ``label``
    (None: a warm-up, not recorded); whether all were 200."""
    s, r = bench.settings, bench.results
    url = f"{base}/v2/{INDEX_REPO}/manifests/{TAG}"
    out = loadgen(url, "HEAD", [ACCEPT], conns, s.load_duration, s.load_warmup)
    statuses, requests = out["statuses"], out["requests"]
    assert isinstance(statuses, dict) and isinstance(requests, int)
    for metric, key, unit, higher in (
        ("p50", "p50_ms", "ms", False),
        ("p99", "p99_ms", "ms", False),
        ("requests/s", "rps", "req/s", True),
    ):
        value = out[key]
        assert isinstance(value, float)
        if case is not None:
            r.add(NUMBER, case, label, metric, unit, value, higher_is_better=higher)
    return requests > 0 and int(statuses.get("200", 0)) == requests


def _cells(
    bench: Bench,
    bases: dict[str, str],
    rep: int,
    case: Callable[[int], str],
    sampler: ConnectionSampler | None = None,
) -> bool:
    """Every connection count against every target, in rotating order; whether the mirror
    answered every HEAD with 200. The load generator's own connections to the upstream are
    not the mirror's: ``sampler`` does not count them."""
    ok = True
    for conns in rotated(CONNECTIONS, rep):
        for label in rotated(list(bases), rep):
            direct = sampler.excluded() if sampler and label == UPSTREAM else nullcontext()
            with direct:
                answered = _heads(bench, bases[label], conns, case(conns), label)
            ok = ok and (answered or label != LABEL)
    return ok


def _once(
    bench: Bench, server: MirrorServer, bases: dict[str, str], digests: list[str], rep: int
) -> None:
    s, r = bench.settings, bench.results
    ok = _heads(bench, server.url, 1, None)  # the first HEAD fetches the manifest
    ok = _cells(bench, bases, rep, idle_case) and ok
    urls = [bench.blob_url(server.url, LANES_REPO, d) for d in digests]
    mark, log_mark = bench.mark(), bench.upstream.log_path.stat().st_size
    fills: list[tuple[float, list[Download]]] = []
    failed: list[BaseException] = []
    # Only CAP - 1 fills transfer at once: the last ones wait for the first to finish.
    timeout = s.transfer_timeout * -(-FILLS // (CAP - 1))
    thread = threading.Thread(target=_fill, args=(urls, timeout, fills, failed))
    running_after = []
    port = urlsplit(bench.upstream.url).port or 80
    with ConnectionSampler(port) as sampler:
        thread.start()
        ok = _cells(bench, bases, rep, during_case, sampler) and ok
        running_after.append(thread.is_alive())
        thread.join(timeout + 10)
    waits, waited = metadata_waits(server.url)
    r.fact(NUMBER, LABEL, "metadata requests that waited for a connection slot", waits, 0)
    r.fact(NUMBER, LABEL, "seconds metadata requests waited for a connection slot", waited)
    if failed or not fills:
        raise RuntimeError(f"the cold fills failed: {failed[:1]!r}")
    wall, downloads = fills[0]
    if any(d.size != s.large_size for d in downloads):
        raise RuntimeError("a cold fill got the wrong number of bytes")
    entries = bench.settle(mark)
    logged = parse_served(read_from(bench.upstream.log_path, log_mark))
    served = [x for x in logged if x.agent != LOADGEN_AGENT]  # the mirror's requests only
    blobs = [x for x in served if x.method == "GET" and "/blobs/" in x.uri]
    peak_requests, peak_blobs = peak_overlap(served), peak_overlap(blobs)
    once = sum(len(blob_gets(entries, d)) != 1 for d in digests)
    rate = FILLS * s.large_size / wall / 1e6
    r.add(NUMBER, f"{FILLS} cold fills", LABEL, "aggregate", "MB/s", rate, higher_is_better=True)
    r.fact(NUMBER, LABEL, "tag HEAD non-200 answers (any cell)", float(not ok), 0)
    r.fact(NUMBER, LABEL, "blobs not fetched from upstream exactly once", once, 0)
    over = {
        "upstream requests in flight above the cap": peak_requests - CAP,
        "upstream TCP connections above the cap": sampler.peak - CAP,
        "upstream blob GETs in flight above cap - 1": peak_blobs - (CAP - 1),
    }
    for name, excess in over.items():
        r.fact(NUMBER, LABEL, name, max(0, excess), 0)
    r.fact(NUMBER, LABEL, "upstream requests in flight at once (peak)", peak_requests)
    r.fact(NUMBER, LABEL, "upstream blob GETs in flight at once (peak)", peak_blobs)
    r.fact(NUMBER, LABEL, "upstream TCP connections at once (peak, sampled)", sampler.peak)
    # With 16 MiB blobs (--quick) the fills may end before the HEAD load does.
    expected = None if s.quick else 1
    r.fact(NUMBER, LABEL, "fills running after every HEAD cell", all(running_after), expected)
    bench.progress(
        f"  {FILLS} fills {wall:.1f} s ({rate:.0f} MB/s); upstream peaks: {peak_requests} "
        f"requests, {peak_blobs} blob GETs, {sampler.peak} connections ({sampler.samples} samples)"
    )


def metadata_waits(base: str) -> tuple[float, float]:
    """How many metadata-lane requests waited for an upstream connection slot, and how long in
    all, from the mirror's ``/metrics``."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    totals = {"mirror_upstream_limit_waits_total": 0.0}
    totals["mirror_upstream_limit_wait_seconds_total"] = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            lane, limit = sample.labels.get("lane"), sample.labels.get("limit")
            if sample.name in totals and (lane, limit) == ("metadata", "connections"):
                totals[sample.name] += sample.value
    return totals["mirror_upstream_limit_waits_total"], totals[
        "mirror_upstream_limit_wait_seconds_total"
    ]


def _fill(
    urls: list[str],
    timeout: float,
    out: list[tuple[float, list[Download]]],
    failed: list[BaseException],
) -> None:
    """The cold fills, in a thread beside the HEAD load."""
    try:
        out.append(curl_each(urls, timeout))
    except BaseException as exc:  # handed to the scenario's thread
        failed.append(exc)
