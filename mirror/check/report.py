"""What a check found, and the two ways ``mirror check`` prints it: a terminal table and
JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

Outcome = Literal["pass", "fail", "error"]


@dataclass
class CheckResult:
    """One check's outcome with the evidence behind it (counts, statuses, headers)."""

    name: str
    outcome: Outcome
    summary: str
    evidence: dict[str, object] = field(default_factory=dict)


def table(results: list[CheckResult]) -> str:
    """A plain-text table, one row per check, the evidence as ``key=value`` pairs."""
    width = max((len(r.name) for r in results), default=5)
    lines = [f"{'check':<{width}}  result  summary", "-" * (width + 40)]
    for result in results:
        lines.append(f"{result.name:<{width}}  {result.outcome.upper():<6}  {result.summary}")
        for key, value in result.evidence.items():
            lines.append(f"{'':<{width}}          {key}={value}")
    passed = sum(r.outcome == "pass" for r in results)
    lines.append(f"{passed}/{len(results)} passed")
    return "\n".join(lines)


def to_json(target: str, results: list[CheckResult]) -> str:
    """The results as one JSON document: the target and every check with its evidence."""
    doc = {"target": target, "checks": [asdict(r) for r in results]}
    return json.dumps(doc, indent=2, default=str)
