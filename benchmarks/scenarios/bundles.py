"""Scenario 9: bundle export and import throughput of the large image and of the 50-layer
image, side by side with ``skopeo copy docker://... oci-archive:`` and back
(``oci-archive: docker://``), with the peak RSS of the exporting and importing process and
the time the CLI spends outside the copy (interpreter start, imports, exit), reported apart:
skopeo is one static binary, the mirror a Python program.

``mirror export`` reads through a running mirror in front of the upstream (cold: the mirror
fills its cache on the way, as an export on a connected site does), then again in-process
from that mirror's stopped data directory (warm: the regional mirror that already holds the
images, read straight from its blob store, as skopeo reads a registry that holds them);
``mirror import`` writes
the tar into a fresh, stopped mirror's data directory. skopeo reads from the upstream itself
and pushes back into a fresh ``docker-registry``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench import Bench
from benchmarks.clients import RssSampler
from benchmarks.seed import LARGE_REPO, LAYERS_REPO, TAG
from benchmarks.servers import REPO_ROOT
from tests.peers.registry import Registry
from tests.peers.skopeo import skopeo_copy

NUMBER = 9
TITLE = "Bundle export and import"
MIRROR = "mirror"
SKOPEO = "skopeo"


def _mirror_cli(
    bench: Bench, work: Path, *args: str, kek: Path | None = None
) -> tuple[float, float, str]:
    """``python -m mirror ARGS``: seconds, peak RSS (MiB) and stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRROR_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["MIRROR_ENCRYPTION_KEK_FILE"] = str(kek or work / "import.kek")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mirror", *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with RssSampler(process.pid) as rss:
        out, err = process.communicate(timeout=bench.settings.transfer_timeout)
    seconds = time.perf_counter() - started
    if process.returncode not in (0,):
        raise RuntimeError(f"mirror {args[0]} exited {process.returncode}: {err.decode()[-800:]}")
    return seconds, rss.peak / 1024, out.decode()


def _skopeo(src: str, dest: str, *options: str) -> float:
    started = time.perf_counter()
    skopeo_copy(src, dest, *options)
    return time.perf_counter() - started


def _import_config(work: Path, bench: Bench, data_dir: Path | None = None) -> Path:
    config = work / ("import.toml" if data_dir is None else "warm.toml")
    config.write_text(
        f'default_upstream = "{bench.upstream.host}"\n'
        f'[storage]\ndata_dir = "{data_dir or work / "data"}"\n'
        f'[[upstreams]]\nhost = "{bench.upstream.host}"\nurl = "{bench.upstream.url}"\n'
    )
    return config


def _case(bench: Bench, repo: str, label: str, rep: int) -> None:
    r = bench.results
    work = bench.work / f"bundle-{label.split()[0]}-{rep}"
    work.mkdir(parents=True, exist_ok=True)
    ref = f"{bench.upstream.host}/{repo}:{TAG}"
    bundle = work / "bundle.tar"
    server = bench.mirror()
    try:
        seconds, peak, out = _mirror_cli(bench, work, "export", ref, "-o", str(bundle),
                                         "--mirror", server.url)  # fmt: skip
    finally:
        server.stop(bench.processes, remove_data=False)
    try:
        warm = _warm_export(bench, work, ref, server.data_dir, server.base_dir / "mirror.kek")
    finally:
        bench.stop_mirror(server)
    manifest = json.loads(out)
    size = manifest["bytes"]
    exported = size / seconds / 1e6
    inner = size / manifest["seconds"] / 1e6
    r.add(NUMBER, f"{label}: export", MIRROR, "throughput without CLI start", "MB/s", inner,
          higher_is_better=True)  # fmt: skip
    r.add(NUMBER, f"{label}: export", MIRROR, "throughput", "MB/s", exported, higher_is_better=True)
    r.add(NUMBER, f"{label}: export", MIRROR, "CLI start-up and exit", "s",
          seconds - manifest["seconds"], higher_is_better=False)  # fmt: skip
    r.add(NUMBER, f"{label}: export", MIRROR, "peak RSS", "MiB", peak, higher_is_better=False)

    r.add(NUMBER, f"{label}: export (warm, in-process)", MIRROR, "throughput", "MB/s",
          size / warm[0] / 1e6, higher_is_better=True)  # fmt: skip
    r.add(NUMBER, f"{label}: export (warm, in-process)", MIRROR, "throughput without CLI start",
          "MB/s", size / warm[1] / 1e6, higher_is_better=True)  # fmt: skip
    r.add(NUMBER, f"{label}: export (warm, in-process)", MIRROR, "peak RSS", "MiB", warm[2],
          higher_is_better=False)  # fmt: skip
    archive = work / "skopeo.tar"
    sk_seconds = _skopeo(
        f"docker://{ref}", f"oci-archive:{archive}:{ref}", "--src-tls-verify=false"
    )
    sk_export = size / sk_seconds / 1e6
    r.add(
        NUMBER, f"{label}: export", SKOPEO, "throughput", "MB/s", sk_export, higher_is_better=True
    )

    config = _import_config(work, bench)
    seconds, peak, out = _mirror_cli(bench, work, "import", str(bundle), "--config", str(config))
    report = json.loads(out)
    imported = size / seconds / 1e6
    inner = size / report["seconds"] / 1e6
    r.add(NUMBER, f"{label}: import", MIRROR, "throughput without CLI start", "MB/s", inner,
          higher_is_better=True)  # fmt: skip
    r.add(NUMBER, f"{label}: import", MIRROR, "throughput", "MB/s", imported, higher_is_better=True)
    r.add(NUMBER, f"{label}: import", MIRROR, "CLI start-up and exit", "s",
          seconds - report["seconds"], higher_is_better=False)  # fmt: skip
    r.add(NUMBER, f"{label}: import", MIRROR, "peak RSS", "MiB", peak, higher_is_better=False)
    r.fact(NUMBER, MIRROR, f"{label}: images added", len(report["added"]), 1)
    _, _, again = _mirror_cli(bench, work, "import", str(bundle), "--config", str(config))
    r.fact(
        NUMBER,
        MIRROR,
        f"{label}: blobs added by a second import",
        json.loads(again)["blobs_added"],
        0,
    )

    with Registry(work / "registry") as target:
        dest = f"docker://{target.host}/{repo}:{TAG}"
        sk_seconds = _skopeo(f"oci-archive:{bundle}:{ref}", dest, "--dest-tls-verify=false")
    sk_import = size / sk_seconds / 1e6
    r.add(
        NUMBER, f"{label}: import", SKOPEO, "throughput", "MB/s", sk_import, higher_is_better=True
    )
    warm_rate = size / warm[0] / 1e6
    r.add(NUMBER, f"{label}: export (warm, in-process)", MIRROR, "ratio to skopeo", "x",
          warm_rate / sk_export, higher_is_better=True)  # fmt: skip
    bench.progress(
        f"  {label}: export {exported:.0f} MB/s ({exported / sk_export:.2f}x skopeo), "
        f"warm in-process {warm_rate:.0f} MB/s ({warm_rate / sk_export:.2f}x), "
        f"import {imported:.0f} MB/s ({imported / sk_import:.2f}x skopeo)"
    )
    r.add(NUMBER, f"{label}: export", MIRROR, "ratio to skopeo", "x", exported / sk_export,
          higher_is_better=True)  # fmt: skip
    r.add(NUMBER, f"{label}: import", MIRROR, "ratio to skopeo", "x", imported / sk_import,
          higher_is_better=True)  # fmt: skip


def _warm_export(
    bench: Bench, work: Path, ref: str, data_dir: Path, kek: Path
) -> tuple[float, float, float]:
    """``mirror export REF --config`` of the stopped mirror's data directory: seconds in all,
    seconds inside the copy, and peak RSS (MiB); every blob must come from the store."""
    config = _import_config(work, bench, data_dir)
    bundle = work / "warm.tar"
    seconds, peak, out = _mirror_cli(bench, work, "export", ref, "-o", str(bundle),
                                     "--config", str(config), kek=kek)  # fmt: skip
    manifest = json.loads(out)
    # Only the manifests (a few kB) may come over HTTP.
    if manifest["written"] - manifest["from_store"] > 1024 * 1024:
        raise RuntimeError(f"warm export read blobs over HTTP: {manifest}")
    bundle.unlink()
    return seconds, manifest["seconds"], peak


def run(bench: Bench) -> None:
    """Per repetition: the large image, then the 50-layer image."""
    large = f"large image ({bench.settings.large_size // (1024 * 1024)} MiB)"
    layers = f"{bench.settings.layer_count}-layer image"
    for rep in range(bench.settings.reps):
        for repo, label in ((LARGE_REPO, large), (LAYERS_REPO, layers)):
            _case(bench, repo, label, rep)
        bench.progress(f"  rep {rep + 1}/{bench.settings.reps} done")
