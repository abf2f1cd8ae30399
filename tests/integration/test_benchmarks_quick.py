"""The benchmark harness in ``--quick`` mode, so it never rots: every scenario runs and lands
in the results table, and the correctness facts hold. Nothing is asserted on speed."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench import rotated
from benchmarks.results import PROXY, Results
from benchmarks.settings import ALL_SCENARIOS

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
NEEDED = ("docker-registry", "skopeo", "nginx", "curl", "containerd", "ctr")


def test_rotated_changes_order_every_repetition() -> None:
    items = ["a", "b", "c"]
    orders = [rotated(items, rep) for rep in range(4)]
    assert all(sorted(order) == items for order in orders)
    assert len({tuple(order) for order in orders}) == 4
    assert {order[0] for order in orders} == {"a", "b", "c"}


@pytest.mark.timeout(240)
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
        timeout=220,
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
    assert facts(3, "mirror", "upstream GETs") == [1]
    assert facts(5, "mirror", "skopeo copy, warm: upstream blob GETs") == [0]
    assert facts(5, "mirror", "ctr content fetch, warm: upstream blob GETs") == [0]
    assert facts(5, "mirror", "skopeo copy, cold: upstream blob GETs") == [51]
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
    ]:
        assert (scenario, target) in targets
    assert len(results.checks) >= 10
    if importlib.util.find_spec("matplotlib") is not None:
        for png in ("throughput.png", "latency_cdf.png", "image_pulls.png"):
            assert (out / png).stat().st_size > 1000
