"""The results of a run: one :class:`Row` per measured case and target, the machine it ran
on, and the ratios of every compared target to the first."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from mirror.bench.stats import Summary


@dataclass(frozen=True)
class Row:
    """One measured case (e.g. ``manifest`` / ``HEAD by tag``) against one target."""

    target: str
    workload: str
    case: str
    mode: str
    concurrency: int
    rate: float | None
    elapsed: float
    summary: Summary


@dataclass
class Results:
    """Everything a report shows."""

    targets: dict[str, str]
    plan: dict[str, Any]
    machine: dict[str, Any]
    started: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        """Failed operations over every row."""
        return sum(row.summary.errors for row in self.rows)

    def comparisons(self) -> list[dict[str, Any]]:
        """For every row of a compared target, its p50 and throughput over the first
        target's same row (``> 1`` p50 ratio means slower)."""
        labels = list(self.targets)
        base = {(r.workload, r.case): r for r in self.rows if r.target == labels[0]}
        out = []
        for row in self.rows:
            ref = base.get((row.workload, row.case))
            if row.target == labels[0] or ref is None:
                continue
            out.append(
                {
                    "workload": row.workload,
                    "case": row.case,
                    "target": row.target,
                    "baseline": ref.target,
                    "p50_ratio": _ratio(row.summary.p50, ref.summary.p50),
                    "throughput_ratio": _ratio(row.summary.per_second, ref.summary.per_second),
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (NaN as ``null``)."""
        document = {
            "tool": "mirror bench",
            "started": self.started,
            "machine": self.machine,
            "targets": [{"label": k, "url": v} for k, v in self.targets.items()],
            "plan": self.plan,
            "rows": [_row_dict(row) for row in self.rows],
            "comparisons": self.comparisons(),
            "errors": self.errors,
            "notes": self.notes,
        }
        cleaned: dict[str, Any] = _no_nan(document)
        return cleaned


def _ratio(value: float, reference: float) -> float:
    if math.isnan(value) or math.isnan(reference) or reference == 0:
        return math.nan
    return value / reference


def _row_dict(row: Row) -> dict[str, Any]:
    summary = asdict(row.summary)
    latency = {k: summary.pop(k) for k in ("p50", "p90", "p99", "max", "mean")}
    return {
        "target": row.target,
        "workload": row.workload,
        "case": row.case,
        "mode": row.mode,
        "concurrency": row.concurrency,
        "rate": row.rate,
        "elapsed_s": row.elapsed,
        "latency_s": latency,
        **summary,
    }


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), recorded with every result."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """The CPU model and count, load averages, OS and Python of the machine running."""
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "load_average": load,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
