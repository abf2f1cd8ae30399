"""``python -m benchmarks.serve_profile [--profiler perf|py-spy] [--cold] [--pulls N] [--out DIR]``:
one mirror's cold fill and warm pulls of the 1 GiB layer with a profiler attached (issue 15).

One upstream is seeded; a fresh mirror fills the layer with one curl pull (profiled with
``--cold``), nginx serves the same file twice for reference, then curl pulls it warm ``N``
times (profiled otherwise). One JSON line per pull: MB/s and the mirror's CPU seconds per GiB
(``/proc/PID/stat``, user + system). ``perf record -F 999 -g`` sees the kernel's copies and
the cipher; ``py-spy record --threads --idle`` sees the Python frames. Summaries:
``perf report -i DIR/PHASE.perf --no-children --sort dso,sym -g none`` and
``python -m benchmarks.profile DIR/PHASE.raw``. On a shared machine only CPU seconds and ratios
within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from benchmarks.bench import large_layer_bench
from benchmarks.clients import cpu_seconds, curl
from benchmarks.seed import LARGE_REPO

GiB = 1024**3


def _attach(profiler: str | None, pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """Start ``profiler`` on ``pid``, writing to ``out`` (perf data or py-spy raw stacks)."""
    if profiler is None:
        return None
    if profiler == "perf":
        argv = ["perf", "record", "-F", "999", "-g", "-o", f"{out}.perf", "-p", str(pid)]
    else:
        argv = ["py-spy", "record", "--pid", str(pid), "--threads", "--idle", "--nonblocking"]
        argv += ["-r", "100", "-f", "raw", "-o", f"{out}.raw"]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached before the first byte
    return spy


def _detach(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # both write their file on SIGINT
        spy.wait(120)


def _pull(url: str, pid: int, size: int, label: str) -> None:
    before = cpu_seconds(pid)
    got = curl(url, 300)
    cpu = cpu_seconds(pid) - before
    row = {
        "pull": label,
        "MBps": round(got.rate / 1e6),
        "cpu_s_per_GiB": round(cpu * GiB / size, 3),
    }
    print(json.dumps(row | {"load": round(os.getloadavg()[0], 2)}), flush=True)


def run(profiler: str | None, cold: bool, pulls: int, out: Path) -> None:
    """Seed, fill one mirror, pull warm; profile the fill (``cold``) or the warm pulls."""
    out.mkdir(parents=True, exist_ok=True)
    with large_layer_bench("serve-profile") as bench:
        digest, size = bench.seeded.large.digest, bench.seeded.large.size
        server = bench.mirror()
        url = bench.blob_url(server.url, LARGE_REPO, digest)
        spy = _attach(profiler if cold else None, server.pid, out / "cold")
        _pull(url, server.pid, size, "cold")
        time.sleep(1.5)  # the fill's background work (sealing, install) ends
        _detach(spy)
        for _ in range(2):
            got = curl(bench.nginx_url(digest), 300)
            print(json.dumps({"pull": "nginx", "MBps": round(got.rate / 1e6)}), flush=True)
        spy = _attach(None if cold else profiler, server.pid, out / "warm")
        for _ in range(pulls):
            _pull(url, server.pid, size, "warm")
        _detach(spy)
        bench.stop_mirror(server)


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_profile")
    parser.add_argument("--profiler", choices=("perf", "py-spy"))
    parser.add_argument("--cold", action="store_true", help="profile the fill, not the warm pulls")
    parser.add_argument("--pulls", type=int, default=3, help="warm pulls")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/profiles"))
    args = parser.parse_args()
    run(args.profiler, args.cold, args.pulls, args.out)


if __name__ == "__main__":
    main()
