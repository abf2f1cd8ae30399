"""Run the selected scenarios against one seeded upstream, then write the report."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import report
from benchmarks.bench import Bench
from benchmarks.clients import curl
from benchmarks.machine import describe, limits
from benchmarks.plots import write_plots
from benchmarks.procs import Processes, sigterm_as_interrupt
from benchmarks.results import Results
from benchmarks.scenarios import SCENARIOS
from benchmarks.seed import seed
from benchmarks.servers import Nginx
from benchmarks.settings import Settings
from benchmarks.targets import evaluate
from tests.peers.registry import Registry


def _settings_doc(s: Settings) -> dict[str, object]:
    doc = dataclasses.asdict(s)
    for key in ("out", "work_dir", "keep", "scenarios", "wait_idle"):
        doc.pop(key, None)
    doc["large_size_MiB"] = round(s.large_size / 2**20, 1)
    doc.pop("large_size")
    return doc


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _wait_idle(limit: float) -> None:
    """Wait up to ``limit`` seconds for the 1-minute load average to drop below 0.5 (other
    work on the machine skews every number)."""
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] >= 0.5 and time.monotonic() < deadline:
        print(f"waiting for an idle machine: load average {_load()}", flush=True)
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))


def _sendfile_rate(bench: Bench) -> float:
    """Best of three nginx ``sendfile`` pulls of the large blob, in bytes/s."""
    url = bench.nginx_url(bench.seeded.large.digest)
    return max(curl(url, bench.settings.transfer_timeout).rate for _ in range(3))


def run(settings: Settings) -> tuple[Results, bool]:
    """Start the upstream and nginx, seed, run every selected scenario (a failing scenario
    is reported and the others still run), stop everything, write the report. Returns the
    results and whether every scenario ran to completion."""
    _wait_idle(settings.wait_idle)
    results = Results(machine=describe(), settings=_settings_doc(settings))
    results.machine["load average at start"] = _load()
    started = time.monotonic()
    processes = Processes()
    work = Path(tempfile.mkdtemp(prefix="mirror-bench-", dir=settings.work_dir))
    complete = True
    try:
        with sigterm_as_interrupt():
            print(f"[   0.0s] work dir {work}", flush=True)
            upstream = Registry(work / "upstream")
            upstream.start_sync()
            processes.add_callback("upstream registry", upstream.stop_sync)
            print(
                f"[{time.monotonic() - started:6.1f}s] upstream on {upstream.url}; seeding "
                f"({settings.large_size / 2**20:.0f} MiB layer, {settings.layer_count} layers)",
                flush=True,
            )
            seeded = seed(
                upstream,
                work,
                large_size=settings.large_size,
                layer_count=settings.layer_count,
                layer_size=settings.layer_size,
            )
            nginx = Nginx(work / "nginx", upstream.storage_dir).start(processes)
            bench = Bench(settings, work, processes, results, upstream, nginx, seeded, started)
            bench.progress("machine limits: sha256, AEAD, loopback relay, nginx sendfile")
            results.limits = limits(
                min(settings.large_size, 512 * 2**20) or 2**20, lambda: _sendfile_rate(bench)
            )
            for number in settings.scenarios:
                module = SCENARIOS[number]
                bench.progress(f"scenario {number}: {module.TITLE}")
                try:
                    module.run(bench)
                    results.scenarios_run.append(number)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    complete = False
                    traceback.print_exc()
                    results.notes.append(f"scenario {number} failed: {exc!r}"[:500])
                    results.scenarios_run.append(number)
            bench.progress("all scenarios done; stopping servers")
    finally:
        processes.close()
        if settings.keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    results.machine["load average at end"] = _load()
    results.notes.append(
        "Scenario 4 uses a closed-loop client: with 16 connections the mean latency is "
        "16 / (requests/s) (Little's law), so p50 <= 1 ms needs >= 16k req/s and the client "
        "shares the machine's cores with the server."
    )
    results.notes.append(
        "Scenario 5 times include starting skopeo / ctr (a fresh containerd each pull; ctr runs "
        "with --debug, which turns off its 100 ms progress ticker)."
    )
    results.notes.append(
        "Scenario 7 writes the metadata of the synthetic images directly (no blobs) and runs "
        "`mirror retention run --dry-run --json` on the stopped data directory; peak RSS is the "
        "command's own."
    )
    write(results, settings)
    return results, complete


def write(results: Results, settings: Settings) -> None:
    """Evaluate the targets and write results.json, PNGs and results.md into ``out``."""
    results.checks = evaluate(results, settings.herd, settings.memory_clients)
    render(results, settings.out)


def render(results: Results, out: Path) -> None:
    """Write results.json, the PNGs and results.md into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(results, out)
    results.save(out / "results.json")
    titles = {n: m.TITLE for n, m in SCENARIOS.items()}
    (out / "results.md").write_text(report.render(results, plots, titles))
