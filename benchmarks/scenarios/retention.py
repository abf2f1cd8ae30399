"""Scenario 7: a retention dry run over ``retention_images`` cached images (100,000 in full
mode), as ``mirror retention run --dry-run`` on a stopped mirror's data directory: wall time
and the command's peak RSS. The metadata is written directly (no blobs are needed to judge)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench import Bench
from benchmarks.bulk_metadata import BulkMetadata, Template, pickled
from mirror.db.metadata import ManifestRecord, TagMove, TagRecord
from mirror.oci.digest import Digest

NUMBER = 7
TITLE = "Retention dry run at scale"
MIRROR = "mirror"
OCI = "application/vnd.oci.image.manifest.v1+json"
# Shape of the synthetic cache: images spread over repositories, layers shared between them.
REPOSITORIES = 500
LAYERS = 2_000
UPSTREAM = "docker.io"


def _digest(text: str) -> Digest:
    return Digest.parse("sha256:" + hashlib.sha256(text.encode()).hexdigest())


def populate(data_dir: Path, images: int, now: float) -> None:
    """Write ``images`` tagged, pulled manifests (two layers each) into the metadata store in
    one transaction: the records a mirror keeps after pulling them."""
    layers = [str(_digest(f"layer-{i}")) for i in range(LAYERS)]
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    manifest = Template(pickled(ManifestRecord(OCI, 900, (a, b), now - 86400)), (a, b))
    tag = Template(pickled(TagRecord(c, OCI, 900, now)), (c,))
    bulk = BulkMetadata(data_dir / "metadata")
    try:
        for r in range(min(REPOSITORIES, images)):
            repo = f"team{r}/app"
            history = []
            for i in range(r, images, REPOSITORIES):
                digest = "sha256:" + hashlib.sha256(f"manifest-{i}".encode()).hexdigest()
                refs = (layers[i % LAYERS], layers[(i * 7) % LAYERS])
                bulk.add_pickled(("manifest", digest), manifest.fill(*refs))
                bulk.add_pickled(("tag", UPSTREAM, repo, f"v{i}"), tag.fill(digest))
                bulk.add(("pull", UPSTREAM, repo, digest), now - i)
                history.append(TagMove(f"v{i}", None, digest, now))
            bulk.add(("tag-history", UPSTREAM, repo), tuple(history))
            bulk.add(("repo", UPSTREAM, repo), True)
    finally:
        bulk.close()


def dry_run(data_dir: Path, timeout: float) -> tuple[float, float, int]:
    """Run the dry run; returns (wall seconds, peak RSS MiB, images reported)."""
    out = data_dir / "dry-run.json"
    started = time.perf_counter()
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mirror",
                "retention",
                "--data-dir",
                str(data_dir),
                "run",
                "--dry-run",
                "--json",
            ],
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"retention dry run took over {timeout:.0f} s")
            time.sleep(0.05)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"retention dry run exited {os.waitstatus_to_exitcode(status)}")
    report = json.loads(out.read_text())
    return wall, usage.ru_maxrss / 1024, len(report["images"])


def run(bench: Bench) -> None:
    """Populate once, then dry-run ``reps`` times."""
    s, r = bench.settings, bench.results
    data_dir = bench.work / "retention-scale"
    bench.progress(f"  writing metadata of {s.retention_images} images")
    started = time.perf_counter()
    populate(data_dir, s.retention_images, time.time())
    bench.progress(f"  written in {time.perf_counter() - started:.1f} s (setup, not timed)")
    case = f"dry run over {s.retention_images} images"
    for rep in range(s.reps):
        wall, rss, reported = dry_run(data_dir, s.transfer_timeout)
        r.add(NUMBER, case, MIRROR, "wall time", "s", wall, higher_is_better=False)
        r.add(NUMBER, case, MIRROR, "peak RSS", "MiB", rss, higher_is_better=False)
        r.fact(NUMBER, MIRROR, "images reported", reported, s.retention_images)
        bench.progress(f"  rep {rep + 1}/{s.reps}: {wall:.1f} s, {rss:.0f} MiB")
