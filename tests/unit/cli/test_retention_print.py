"""``mirror retention run`` on a data directory prints the deleting run's report from where the
run spilled it: the text of ``json.dumps(report, indent=2)`` (the run before streaming's), or
a line per image and the run's summary."""

from __future__ import annotations

import io
import json
from pathlib import Path

from mirror.cli.retention import _print_run

from ..retention.every_rule import normalised_run, service, stock

EXPECTED = Path(__file__).parents[2] / "data" / "retention" / "every-rule-run.json"


async def test_a_printed_run_is_the_json_of_its_report(tmp_path: Path) -> None:
    names: list[str] = []
    retention, metadata = service(tmp_path, names)
    await stock(tmp_path, names)
    out = io.StringIO()
    try:
        await _print_run(retention, out, True)
        text = out.getvalue()
        report = json.loads(text)
        assert text == json.dumps(report, indent=2) + "\n"
        expected = json.loads(EXPECTED.read_text())
        assert normalised_run(report, retention.audit_events()) == expected
    finally:
        retention.close()
        metadata.close()


async def test_a_printed_run_as_text_ends_with_what_it_did(tmp_path: Path) -> None:
    names: list[str] = []
    retention, metadata = service(tmp_path, names)
    await stock(tmp_path, names)
    out = io.StringIO()
    try:
        await _print_run(retention, out, False)
        lines = out.getvalue().splitlines()
        images = len(json.loads(EXPECTED.read_text())["report"]["images"])
        assert len(lines) == images + 1
        assert lines[-1].endswith(
            f"{images} images, 8 evicted, 8 objects deleted, {_freed()} bytes freed,"
            " 0 deferred (in use)"
        )
    finally:
        retention.close()
        metadata.close()


def _freed() -> int:
    """The bytes the golden run freed."""
    return int(json.loads(EXPECTED.read_text())["report"]["bytes_freed"])
