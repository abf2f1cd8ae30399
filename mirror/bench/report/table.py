"""The terminal table: one line per row (p50, p90, p99, max in ms, throughput, errors), then
the ratios of compared targets to the first, the machine and the notes."""

from __future__ import annotations

import math
from typing import Any

from mirror.bench.results import Results, Row

HEADER = (
    "target",
    "workload",
    "case",
    "mode",
    "c",
    "ok/sent",
    "p50",
    "p90",
    "p99",
    "max",
    "req/s",
    "MB/s",
    "errors",
)


UNITS = "latencies in ms (of successful operations); req/s and MB/s over each case's wall time"


def ms(seconds: float) -> str:
    """Seconds as milliseconds for the table (``-`` when unknown)."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def number(value: float, digits: int = 1) -> str:
    """A rate for the table (``-`` when unknown)."""
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def cells(row: Row) -> list[str]:
    """The table cells of one row."""
    s = row.summary
    mode = f"open {row.rate:g}/s" if row.rate else row.mode
    errors = ", ".join(f"{kind} x{n}" for kind, n in s.error_kinds.items()) or "0"
    return [
        row.target,
        row.workload,
        row.case,
        mode,
        str(row.concurrency),
        f"{s.sent - s.errors}/{s.sent}",
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
        number(s.per_second),
        number(s.bytes_per_second / 1e6, 2),
        errors,
    ]


def _grid(header: tuple[str, ...] | list[str], lines: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*line) for line in lines
    ]


def _ratio(value: Any) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}x"


def table(results: Results) -> str:
    """The whole terminal report (latencies in ms)."""
    out = _grid(HEADER, [cells(row) for row in results.rows]) if results.rows else ["no rows"]
    comparisons = results.comparisons()
    if comparisons:
        out += ["", "compared with " + next(iter(results.targets)) + " (p50 > 1x: slower)"]
        out += _grid(
            ("target", "workload", "case", "p50 ratio", "throughput ratio"),
            [
                [
                    c["target"],
                    c["workload"],
                    c["case"],
                    _ratio(c["p50_ratio"]),
                    _ratio(c["throughput_ratio"]),
                ]
                for c in comparisons
            ],
        )
    m = results.machine
    out += ["", UNITS, f"machine: {m['cpu_model']} x{m['cpus']}, load {m['load_average']}"]
    out += [f"note: {note}" for note in results.notes]
    return "\n".join(out)
