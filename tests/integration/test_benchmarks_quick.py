"""The benchmark harness in ``--quick`` mode, so it never rots: every scenario runs and lands
in the results table, and the correctness facts hold. Nothing is asserted on speed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench import rotated
from benchmarks.procs import Processes, stop_process, wait_http
from benchmarks.pushclient import SyntheticBlob
from benchmarks.results import DISTRIBUTION, PROXY, Results
from benchmarks.scenarios import lanes, tier, wan_upstream, workers
from benchmarks.scenarios.pushes import SINK, SKOPEO_CASE
from benchmarks.settings import ALL_SCENARIOS
from tests.peers.ports import free_port

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
NEEDED = ("docker-registry", "skopeo", "nginx", "curl", "containerd", "ctr")


def test_rotated_changes_order_every_repetition() -> None:
    items = ["a", "b", "c"]
    orders = [rotated(items, rep) for rep in range(4)]
    assert all(sorted(order) == items for order in orders)
    assert len({tuple(order) for order in orders}) == 4
    assert {order[0] for order in orders} == {"a", "b", "c"}


def test_synthetic_push_blob_is_its_pieces_and_salted_per_push() -> None:
    block = bytes(range(256)) * 16
    blob = SyntheticBlob.make(3 * len(block) + 100, 7, block)
    whole = b"".join(blob.pieces(0, blob.size))
    assert len(whole) == blob.size
    assert whole[len(block) :] == block * 2 + block[:100]
    assert blob.digest() == "sha256:" + hashlib.sha256(whole).hexdigest()
    # Any window is the same bytes as the slice of the whole (the chunked upload's PATCHes).
    assert b"".join(blob.pieces(4000, 5000)) == whole[4000:9000]
    assert SyntheticBlob.make(blob.size, 8, block).digest() != blob.digest()


def test_push_client_ceiling_against_the_discard_server(tmp_path: Path) -> None:
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sink", "--port", str(port)], cwd=REPO_ROOT
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", sink, 10.0, "sink")
        for chunk in ("0", str(64 * 1024)):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.pushclient",
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--repo",
                    "a/b",
                    "--size",
                    str(1024 * 1024),
                    "--chunk",
                    chunk,
                    "--concurrency",
                    "2",
                    "--no-verify",
                ],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            doc = json.loads(done.stdout)
            assert [p["bytes"] for p in doc["pushes"]] == [1024 * 1024] * 2
            assert len(set(doc["digests"])) == 2
    finally:
        stop_process(sink)


# Thirteen scenarios in quick mode: about 4 min on an idle machine, 7 at load 16.
@pytest.mark.timeout(1200)
def test_quick_run_measures_every_scenario(tmp_path: Path) -> None:
    missing = [name for name in NEEDED if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/install-test-deps.sh)")
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "run",
            "--quick",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = Results.load(out / "results.json")

    assert results.scenarios_run == list(ALL_SCENARIOS)
    assert not [n for n in results.notes if "failed" in n]
    for number in ALL_SCENARIOS:
        assert [m for m in results.measurements if m.scenario == number and m.values], number
    table = (out / "results.md").read_text()
    assert "## Targets" in table and "## Measurements" in table
    for number in ALL_SCENARIOS:
        assert f"\n| {number} | " in table, f"scenario {number} missing from the table"
    assert "| 7 | retention dry run over 2000 images < 60 s" in table

    # Correctness, whatever the speed.
    assert all(f.holds is not False for f in results.facts), [
        f for f in results.facts if f.holds is False
    ]

    def facts(scenario: int, target: str, prefix: str) -> list[float]:
        return [
            f.value
            for f in results.facts
            if f.scenario == scenario and f.target == target and f.name.startswith(prefix)
        ]

    assert facts(2, "mirror", "upstream GETs") == [1]
    assert facts(2, "mirror", "upstream bytes") == [1.0]
    assert facts(2, PROXY, "upstream GETs")[0] >= 1
    # Scenario 3 runs two patterns (a herd of whole pulls, containerd's parallel ranges).
    assert set(facts(3, "mirror", "upstream GETs")) == {1}
    assert facts(5, "mirror", "skopeo copy, warm: upstream blob GETs") == [0]
    assert facts(5, "mirror", "ctr content fetch, warm: upstream blob GETs") == [0]
    assert facts(5, "mirror", "skopeo copy, cold: upstream blob GETs") == [51]
    # Pushes (scenario 8): every registry serves what was pushed, digests kept.
    pushed = [m.target for m in results.measurements if m.scenario == 8 and m.metric == "time"]
    assert DISTRIBUTION in pushed and any(t.startswith("mirror") for t in pushed)
    for target in pushed:
        assert facts(8, target, f"{SKOPEO_CASE}: manifest digest kept") == [1]
        assert facts(8, target, "8 concurrent") == [8]
        assert len(facts(8, target, "")) == 4
    assert "| 8 | mirror, encryption on (default), 8 concurrent 4 MiB pushes: peak RSS" in table
    # The tier of 3 (scenario 10): every blob of the cold image fetched upstream exactly once
    # across the tier while all clients pulled through nginx, and no byte more.
    assert facts(10, tier.TIER, "blobs not fetched from upstream exactly once") == [0]
    assert facts(10, tier.TIER, "upstream bytes / image bytes") == [1.0]
    assert facts(10, tier.ONE, "blobs not fetched from upstream exactly once") == [0]
    # Two workers (scenario 11): the cold herd, spread over both processes, is one upstream GET.
    assert facts(11, workers.WORKERS2, "upstream GETs of the blob") == [1]
    assert facts(11, workers.WORKERS2, "tag HEAD non-200") == [0]
    assert "| 11 | 2 workers: 16-connection tag p99 ≤ 2 ms" in table
    # Per-upstream limits (scenario 12): 8 cold fills under a 4-connection cap, measured at the
    # upstream: never more than 4 requests or connections, never more than 3 blob transfers
    # (the fourth slot is the metadata lane's), each blob fetched once, every tag HEAD 200, and
    # no metadata request waited for a connection slot (the mirror's own count).
    for name in (
        "upstream requests in flight above the cap",
        "upstream TCP connections above the cap",
        "upstream blob GETs in flight above cap - 1",
        "blobs not fetched from upstream exactly once",
        "tag HEAD non-200 answers",
        "metadata requests that waited for a connection slot",
    ):
        assert facts(12, lanes.LABEL, name) == [0], name
    assert 1 <= facts(12, lanes.LABEL, "upstream blob GETs in flight at once (peak)")[0] <= 3
    assert 1 <= facts(12, lanes.LABEL, "upstream TCP connections at once (peak")[0] <= 4
    assert "| 12 | 16-connection tag HEAD p99 during 8 cold fills ≤ 5 ms" in table
    _assert_wan_facts(results)
    # Every reference took part where the issue compares against it.
    targets = {(m.scenario, m.target) for m in results.measurements}
    for scenario, target in [
        (1, "nginx sendfile"),
        (1, "upstream (direct)"),
        (1, PROXY),
        (2, PROXY),
        (4, PROXY),
        (5, PROXY),
        (6, PROXY),
        (8, DISTRIBUTION),
        (8, SINK),
        (10, tier.TIER),
        (10, tier.ONE),
        (11, "nginx sendfile"),
        (11, workers.WORKERS2),
        (11, workers.WORKERS1),
        (11, workers.CEILING),
        (12, lanes.LABEL),
        (12, lanes.UPSTREAM),
        (12, lanes.CEILING),
        (13, wan_upstream.DIRECT),
        (13, PROXY),
    ]:
        assert (scenario, target) in targets
    assert len(results.checks) >= 10
    if importlib.util.find_spec("matplotlib") is not None:
        for png in ("throughput.png", "latency_cdf.png", "image_pulls.png"):
            assert (out / png).stat().st_size > 1000


def _assert_wan_facts(results: Results) -> None:
    """Scenario 13 (the WAN link): every client got every byte, direct and through both
    caches, and the mirror fetched each byte from upstream exactly once."""
    for case in (wan_upstream.BLOB_CASE, wan_upstream.IMAGE_CASE):
        got = {
            (f.target, f.name.removeprefix(f"{case}: ")): f.value
            for f in results.facts
            if f.scenario == 13 and f.name.startswith(case)
        }
        for target in wan_upstream.TARGETS:
            assert got[(target, "client bytes / content bytes")] == 1.0, (case, target)
        assert got[("mirror", "upstream bytes / content bytes")] == 1.0, case
        assert got[(PROXY, "upstream bytes / content bytes")] >= 1.0, case


def test_forgetting_one_stopped_server_keeps_the_entries_of_the_others() -> None:
    stopped: list[str] = []
    processes = Processes()
    for name in ("mirror mirror-1", "mirror mirror-10", "push sink"):
        processes.add_callback(name, lambda name=name: stopped.append(name))  # type: ignore[misc]
    processes.remove("mirror mirror-1")
    processes.close()
    assert sorted(stopped) == ["mirror mirror-10", "push sink"]
