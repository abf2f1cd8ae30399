"""PNG plots of a run: a latency CDF per workload (a line per case and target) and
throughput against concurrency for the sweep. Needs matplotlib (``pip install
'mirror[bench]'``); without it there are no plots and a note says so."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

from mirror.bench.results import Results, Row

DPI = 80


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _cdf(plt: Any, workload: str, rows: list[Row]) -> bytes:
    figure, ax = plt.subplots(figsize=(6.5, 3.6))
    for row in rows:
        q = row.summary.quantiles
        if q:
            ax.plot(
                [x * 1000 for x in q],
                [i / (len(q) - 1) for i in range(len(q))],
                label=f"{row.target}: {row.case}",
            )
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{workload}: latency CDF")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    data = _png(figure)
    plt.close(figure)
    return data


def _sweep(plt: Any, rows: list[Row]) -> bytes:
    figure, ax = plt.subplots(figsize=(6.5, 3.6))
    by_target: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_target[row.target].append(row)
    for target, points in by_target.items():
        points.sort(key=lambda r: r.concurrency)
        ax.plot(
            [r.concurrency for r in points],
            [r.summary.per_second for r in points],
            marker="o",
            label=target,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests/s")
    ax.set_title("sweep: throughput vs concurrency (manifest GET by tag)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    data = _png(figure)
    plt.close(figure)
    return data


def plots(results: Results) -> dict[str, bytes]:
    """PNG bytes by file name (``cdf-<workload>.png``, ``sweep.png``); empty without
    matplotlib (and a note is added to ``results``)."""
    try:
        plt = _pyplot()
    except ImportError:
        results.notes.append("matplotlib is not installed: no plots (pip install 'mirror[bench]')")
        return {}
    by_workload: dict[str, list[Row]] = defaultdict(list)
    for row in results.rows:
        by_workload[row.workload].append(row)
    out = {
        f"cdf-{workload}.png": _cdf(plt, workload, rows)
        for workload, rows in by_workload.items()
        if workload != "sweep"
    }
    if by_workload.get("sweep"):
        out["sweep.png"] = _sweep(plt, by_workload["sweep"])
    return out
