"""Scenario 8 (issue 11): pushes into a hosted registry, the mirror (auth on, a user of a
hosted tenancy; every encryption variant) side by side with a plain ``docker-registry``
(filesystem storage, no proxy, no auth): a monolithic and a chunked upload of one large blob,
``skopeo copy`` of the 50-layer image from an OCI layout, and the mirror's peak RSS during
``push_clients`` concurrent large pushes. A discard server gives the push client's ceiling."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench import Bench, rotated
from benchmarks.clients import (
    RssSampler,
    cpu_seconds,
    manifest_digest,
    proc_status_kib,
    push_blobs,
    skopeo_push,
)
from benchmarks.hosted import TENANCY, provision, push_variants
from benchmarks.procs import stop_process, wait_http
from benchmarks.results import DISTRIBUTION
from benchmarks.seed import LAYERS_REPO, TAG
from benchmarks.servers import REPO_ROOT, MirrorVariant
from tests.peers.ports import free_port
from tests.peers.skopeo import skopeo_copy

NUMBER = 8
TITLE = "Pushes into a hosted registry (vs docker-registry)"
SINK = "discard server (client ceiling)"
REPO = f"{TENANCY}/push"
IMAGE_REPO = f"{TENANCY}/image"
MiB = 1024 * 1024
GiB = 1024 * MiB


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // 1024} KiB"


def monolithic_case(size: int) -> str:
    """The case name of (a)."""
    return f"{_size(size)} monolithic (POST, PUT with body)"


def chunked_case(size: int, chunk: int) -> str:
    """The case name of (b)."""
    return f"{size // chunk} x {_size(chunk)} chunked (PATCH Content-Range, PUT)"


def concurrent_case(clients: int, size: int) -> str:
    """The case name of (d)."""
    return f"{clients} concurrent {_size(size)} pushes"


SKOPEO_CASE = "skopeo copy oci: layout, 50 layers"


@dataclass
class Target:
    """A registry to push into, started fresh: base URL, host, PID, login, and its stop."""

    label: str
    url: str
    host: str
    pid: int
    stop: Callable[[], None]
    credentials: tuple[str, Path] | None = None

    @property
    def skopeo_credentials(self) -> tuple[str, str] | None:
        if self.credentials is None:
            return None
        return self.credentials[0], self.credentials[1].read_text().strip()


def _mirror(bench: Bench, variant: MirrorVariant) -> Target:
    server = bench.mirror(variant)
    try:
        pusher = provision(server)
    except BaseException:
        bench.stop_mirror(server)
        raise
    return Target(
        variant.label,
        server.url,
        server.host,
        server.pid,
        lambda: bench.stop_mirror(server),
        (pusher.login, pusher.token_file),
    )


def _distribution(bench: Bench) -> Target:
    registry = bench.hosted_registry()
    assert registry.pid is not None
    return Target(
        DISTRIBUTION,
        registry.url,
        registry.host,
        registry.pid,
        lambda: bench.stop_hosted_registry(registry),
    )


def start_sink(bench: Bench) -> Target:
    """The discard server (:mod:`benchmarks.sink`), started and registered for cleanup."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sink", "--port", str(port)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
    )
    bench.processes.add_process("push sink", process)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v2/", process, 10.0, "push sink")

    def stop() -> None:
        stop_process(process)
        bench.processes.remove("push sink")

    return Target(SINK, url, f"127.0.0.1:{port}", process.pid, stop)


def _start(bench: Bench, label: str, variants: dict[str, MirrorVariant]) -> Target:
    if label == DISTRIBUTION:
        return _distribution(bench)
    if label == SINK:
        return start_sink(bench)
    return _mirror(bench, variants[label])


def _blobs(bench: Bench, target: Target, salt: int) -> None:
    """(a) monolithic and (b) chunked upload of one large blob: throughput, the server's CPU
    seconds per GiB, and a fact that the registry then serves it with the right size."""
    s, r = bench.settings, bench.results
    verify = target.label != SINK
    for chunk, case in (
        (0, monolithic_case(s.push_size)),
        (s.push_chunk, chunked_case(s.push_size, s.push_chunk)),
    ):
        before = cpu_seconds(target.pid)
        run = push_blobs(
            target.url,
            REPO,
            s.push_size,
            chunk=chunk,
            salt=salt + chunk,
            credentials=target.credentials,
            verify=verify,
            timeout=s.transfer_timeout,
        )
        cpu = (cpu_seconds(target.pid) - before) / (s.push_size / GiB)
        label = target.label
        r.add(NUMBER, case, label, "throughput", "MB/s", run.rate / 1e6, higher_is_better=True)
        r.add(NUMBER, case, label, "server CPU per GiB", "CPU-s", cpu, higher_is_better=False)
        if chunk:
            seconds = run.last_put[0]
            r.add(NUMBER, case, label, "final PUT (commit)", "s", seconds, higher_is_better=False)
        if verify:
            r.fact(NUMBER, target.label, f"{case}: blob served with its size", run.verified, 1)


def _image(bench: Bench, target: Target, layout: str, expected: str) -> None:
    """(c) ``skopeo copy`` of the 50-layer image from an OCI layout; time, and a fact that
    the registry answers the layout's manifest digest for the tag."""
    ref = f"{target.host}/{IMAGE_REPO}:{TAG}"
    seconds = skopeo_push(layout, ref, target.skopeo_credentials)
    r = bench.results
    r.add(NUMBER, SKOPEO_CASE, target.label, "time", "s", seconds, higher_is_better=False)
    got = manifest_digest(ref, target.skopeo_credentials)
    r.fact(NUMBER, target.label, f"{SKOPEO_CASE}: manifest digest kept", float(got == expected), 1)


def _memory(bench: Bench, target: Target, salt: int) -> float:
    """(d) ``push_clients`` concurrent monolithic pushes: the server's sampled peak RSS, its
    VmHWM afterwards, and the aggregate throughput."""
    s, r = bench.settings, bench.results
    case = concurrent_case(s.push_clients, s.push_size)
    with RssSampler(target.pid) as rss:
        run = push_blobs(
            target.url,
            REPO,
            s.push_size,
            concurrency=s.push_clients,
            salt=salt,
            credentials=target.credentials,
            timeout=s.transfer_timeout,
        )
    hwm = proc_status_kib(target.pid, "VmHWM") / 1024
    r.add(NUMBER, case, target.label, "peak RSS", "MiB", rss.peak / 1024, higher_is_better=False)
    r.add(NUMBER, case, target.label, "VmHWM", "MiB", hwm, higher_is_better=False)
    r.add(
        NUMBER, case, target.label, "aggregate throughput", "MB/s", run.aggregate / 1e6,
        higher_is_better=True,
    )  # fmt: skip
    r.fact(
        NUMBER, target.label, f"{case}: blobs served with their size", run.verified, s.push_clients
    )
    return rss.peak / 1024


def _layout(bench: Bench) -> tuple[str, str]:
    """The 50-layer image copied from the upstream into an OCI layout; (source, digest)."""
    layout = bench.work / "push-layout"
    shutil.rmtree(layout, ignore_errors=True)
    skopeo_copy(
        f"docker://{bench.upstream.host}/{LAYERS_REPO}:{TAG}",
        f"oci:{layout}:{TAG}",
        "--src-tls-verify=false",
    )
    return f"oci:{layout}:{TAG}", manifest_digest(
        f"{bench.upstream.host}/{LAYERS_REPO}:{TAG}", None
    )


def run(bench: Bench) -> None:
    """Per repetition, every target in rotating order, each started fresh: (a), (b), (c),
    then (d) (not on the discard server)."""
    s = bench.settings
    variants = {v.label: v for v in push_variants(s.mirror_args, s.auth_hash_cost)}
    labels = [*variants, DISTRIBUTION, SINK]
    source, expected = _layout(bench)
    for rep in range(s.reps):
        for label in rotated(labels, rep):
            target = _start(bench, label, variants)
            try:
                _blobs(bench, target, salt=1000 * rep)
                if label == SINK:
                    continue
                _image(bench, target, source, expected)
                peak = _memory(bench, target, salt=1000 * rep + 500)
            finally:
                target.stop()
            bench.progress(f"  rep {rep + 1}/{s.reps}: {label} peak RSS {peak:.0f} MiB")
    shutil.rmtree(bench.work / "push-layout", ignore_errors=True)
