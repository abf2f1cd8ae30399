"""The report: one table row per check with its evidence, and JSON carrying the same."""

from __future__ import annotations

import json

from mirror.check.report import CheckResult, table, to_json

RESULTS = [
    CheckResult("herd", "pass", "8/8 complete, 1 upstream GET(s)", {"upstream_gets": 1}),
    CheckResult("wrong-bytes", "fail", "corrupt origin: 200", {"healed": True}),
]


def test_table_lists_every_check_its_outcome_and_evidence() -> None:
    text = table(RESULTS)
    assert "herd" in text and "PASS" in text and "upstream_gets=1" in text
    assert "wrong-bytes" in text and "FAIL" in text
    assert text.splitlines()[-1] == "1/2 passed"


def test_json_round_trips() -> None:
    doc = json.loads(to_json("http://m", RESULTS))
    assert doc["target"] == "http://m"
    assert doc["checks"][0] == {
        "name": "herd",
        "outcome": "pass",
        "summary": "8/8 complete, 1 upstream GET(s)",
        "evidence": {"upstream_gets": 1},
    }
