"""``python -m benchmarks.cold_ab TREE_A TREE_B [--reps N] [--profile PREFIX]``: an
interleaved A/B of two source trees of the mirror on cold pulls (issue 15, items 2 and 3).

One upstream is seeded once; then per repetition, in an order rotated every time: a fresh mirror
of each tree for one cold 1 GiB pull with curl (throughput, CPU seconds of the mirror process
incl. background work), a fresh one for the chunked parallel ``Range`` pattern (8 MiB pieces, 8
in flight) followed by the same pattern again warm, and a fresh distribution proxy for one cold
pull. One JSON line per measurement; on a shared machine only ratios within a repetition and
CPU seconds mean anything. ``--profile`` attaches ``py-spy record --format raw`` to each mirror.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from benchmarks import servers
from benchmarks.bench import Bench, blob_gets, large_layer_bench, rotated
from benchmarks.clients import cpu_seconds, curl, ranged_pull
from benchmarks.seed import LARGE_REPO
from benchmarks.servers import MirrorServer

PIECE = 8 * 1024 * 1024
WORKERS = 8


def _spy(server: MirrorServer, prefix: str | None, name: str) -> subprocess.Popen[bytes] | None:
    if prefix is None:
        return None
    argv = ["py-spy", "record", "--pid", str(server.pid), "--nonblocking", "-r", "50"]
    argv += ["-f", "raw", "-o", f"{prefix}-{name}.raw"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(bench: Bench, server: MirrorServer, spy: subprocess.Popen[bytes] | None) -> None:
    bench.stop_mirror(server)
    if spy is not None:
        spy.wait(60)  # py-spy writes its profile once the mirror has exited


def _cold(bench: Bench, prefix: str | None, name: str) -> dict[str, float]:
    """One cold pull through a fresh mirror: MB/s, seconds and CPU seconds."""
    digest, size = bench.seeded.large.digest, bench.seeded.large.size
    server = bench.mirror()
    spy = _spy(server, prefix, f"{name}-cold")
    try:
        mark, before = bench.mark(), cpu_seconds(server.pid)
        got = curl(bench.blob_url(server.url, LARGE_REPO, digest), bench.settings.transfer_timeout)
        gets = blob_gets(bench.settle(mark), digest)
        cpu = cpu_seconds(server.pid) - before
    finally:
        _stop(bench, server, spy)
    if got.size != size or len(gets) != 1:
        raise RuntimeError(f"cold pull: {got.size} bytes, {len(gets)} upstream GETs")
    return {"cold_MBps": got.rate / 1e6, "cold_s": got.seconds, "cold_cpu": cpu}


def _ranged(bench: Bench, prefix: str | None, name: str) -> dict[str, float]:
    """The chunked Range pattern through a fresh mirror, cold then warm: seconds, CPU seconds."""
    digest, size = bench.seeded.large.digest, bench.seeded.large.size
    timeout = bench.settings.transfer_timeout
    server = bench.mirror()
    spy = _spy(server, prefix, f"{name}-range")
    url = bench.blob_url(server.url, LARGE_REPO, digest)
    try:
        mark, before = bench.mark(), cpu_seconds(server.pid)
        cold = ranged_pull(url, size, PIECE, WORKERS, timeout)
        gets = blob_gets(bench.settle(mark), digest)
        middle = cpu_seconds(server.pid)
        warm = ranged_pull(url, size, PIECE, WORKERS, timeout)
        after = cpu_seconds(server.pid)
    finally:
        _stop(bench, server, spy)
    if cold.digest != digest or warm.digest != digest or len(gets) != 1:
        raise RuntimeError(f"chunked Range: wrong pieces or {len(gets)} upstream GETs")
    return {
        "range_s": cold.seconds,
        "range_first_wave_s": cold.first_wave,
        "range_cpu": middle - before,
        "warm_range_s": warm.seconds,
        "warm_range_cpu": after - middle,
    }


def _proxy(bench: Bench) -> dict[str, float]:
    proxy = bench.proxy()
    try:
        digest = bench.seeded.large.digest
        got = curl(bench.blob_url(proxy.url, LARGE_REPO, digest), bench.settings.transfer_timeout)
    finally:
        bench.stop_proxy(proxy)
    return {"cold_MBps": got.rate / 1e6, "cold_s": got.seconds}


def run(trees: dict[str, Path], reps: int, prefix: str | None) -> None:
    """Seed once, then every repetition measures each tree and the proxy, order rotated."""
    with large_layer_bench("cold-ab") as bench:
        for rep in range(reps):
            for label in rotated([*trees, "proxy"], rep):
                row: dict[str, object] = {"rep": rep, "label": label, "load": os.getloadavg()[0]}
                if label == "proxy":
                    row.update(_proxy(bench))
                else:
                    servers.REPO_ROOT = trees[label]
                    cold = _cold(bench, prefix, f"{label}{rep}")
                    ranged = _ranged(bench, prefix, f"{label}{rep}")
                    row.update({**cold, **ranged})
                    row["range_ratio"] = ranged["range_s"] / cold["cold_s"]
                print(json.dumps(row), flush=True)


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_ab")
    parser.add_argument("a", type=Path, help="source tree A (e.g. `git archive main` unpacked)")
    parser.add_argument("b", type=Path, help="source tree B")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--profile", help="py-spy raw profiles go to PREFIX-<tree><rep>-*.raw")
    args = parser.parse_args()
    run({"A": args.a.resolve(), "B": args.b.resolve()}, args.reps, args.profile)


if __name__ == "__main__":
    main()
