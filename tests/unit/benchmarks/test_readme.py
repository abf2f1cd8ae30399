"""The README's benchmark table is regenerated from a run's results, between its markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.readme import BEGIN, END, MissingMarkers, replace_block
from benchmarks.results import Check, Results


def a_run() -> Results:
    r = Results()
    r.machine.update(
        {
            "date": "2026-12-01 16:00 UTC",
            "nproc": "2",
            "cpu": "AMD EPYC",
            "cpu flags": "aes sha_ni avx2",
            "mirror commit": "abc1234",
            "load average at start": "1.0 1.0 1.0",
            "load average at end": "2.0 2.0 2.0",
        }
    )
    r.limits["sha256 (one core)"] = 1.5e9
    r.checks += [
        Check(1, "warm ≥ 0.85x nginx", "1.02x", True),
        Check(2, "cold ≥ 0.9x proxy", "0.61x", False),
    ]
    return r


def test_the_marked_block_gets_the_runs_machine_limits_and_every_target(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    a_run().save(run / "results.json")
    readme = tmp_path / "README.md"
    readme.write_text(f"# mirror\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")

    assert main(["readme", str(run), "--readme", str(readme)]) == 0

    text = readme.read_text()
    assert text.startswith("# mirror\n\nbefore\n" + BEGIN + "\n")
    assert text.endswith(END + "\nafter\n")
    assert "old table" not in text
    assert "mirror commit abc1234, 2 x AMD EPYC (aes sha_ni avx2)" in text
    assert "sha256 (one core) 1.50 GB/s" in text
    assert "| 1 | warm ≥ 0.85x nginx | 1.02x | yes |" in text
    assert "| 2 | cold ≥ 0.9x proxy | 0.61x | **no** |" in text
    assert "(benchmarks/published/results.md)" in text


def test_a_readme_without_markers_is_refused_untouched() -> None:
    with pytest.raises(MissingMarkers):
        replace_block("# mirror\nno markers\n", ["x"])
    with pytest.raises(MissingMarkers):
        replace_block(f"{END}\n{BEGIN}\n", ["x"])
