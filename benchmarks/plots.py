"""PNG plots of a run: throughput bars (scenarios 1-3), latency CDFs (scenario 4) and
whole-image pull times (scenario 5). Needs matplotlib (the ``bench`` extra); without it the
report just has no plots."""

from __future__ import annotations

from pathlib import Path

from benchmarks.results import Measurement, Results

DPI = 72


def _bars(ax: object, rows: list[Measurement], title: str, unit: str) -> None:
    labels = [
        f"{m.target}\n{m.case}" if len({x.case for x in rows}) > 1 else m.target for m in rows
    ]
    medians = [m.median for m in rows]
    low = [m.median - m.low for m in rows]
    high = [m.high - m.median for m in rows]
    y = list(range(len(rows)))
    ax.barh(y, medians, xerr=[low, high], color="tab:blue", capsize=3)  # type: ignore[attr-defined]
    ax.set_yticks(y, labels, fontsize=7)  # type: ignore[attr-defined]
    ax.invert_yaxis()  # type: ignore[attr-defined]
    ax.set_xlabel(unit)  # type: ignore[attr-defined]
    ax.set_title(title, fontsize=9)  # type: ignore[attr-defined]


def write_plots(r: Results, out: Path) -> list[str]:
    """Write the PNGs into ``out``; returns their file names (empty without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        r.notes.append("matplotlib is not installed: no plots (pip install -e '.[bench]').")
        return []
    written = []
    groups = [
        (
            "Warm large blob",
            [m for m in r.measurements if m.scenario == 1 and m.metric == "throughput"],
        ),
        (
            "Cold large blob",
            [m for m in r.measurements if m.scenario == 2 and m.metric == "throughput"],
        ),
        (
            "Concurrent cold pulls (aggregate)",
            [m for m in r.measurements if m.scenario == 3 and m.metric == "aggregate throughput"],
        ),
    ]
    groups = [(t, rows) for t, rows in groups if rows]
    if groups:
        fig, axes = plt.subplots(
            len(groups),
            1,
            figsize=(7, 1.2 + 1.1 * sum(max(2, len(rows)) * 0.45 for _, rows in groups)),
            squeeze=False,
        )
        for ax, (title, rows) in zip(axes[:, 0], groups, strict=True):
            _bars(ax, rows, title, "MB/s (median, min-max)")
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=DPI)
        plt.close(fig)
        written.append("throughput.png")
    if r.latency_quantiles:
        cases = sorted({key.split("|")[0] for key in r.latency_quantiles})
        conns = sorted({int(key.split("|")[2]) for key in r.latency_quantiles})
        fig, axes = plt.subplots(
            len(cases), len(conns), figsize=(4 * len(conns), 2.6 * len(cases)), squeeze=False
        )
        for i, case in enumerate(cases):
            for j, n in enumerate(conns):
                ax = axes[i, j]
                for key, q in sorted(r.latency_quantiles.items()):
                    k_case, target, k_conns = key.split("|")
                    if k_case == case and int(k_conns) == n and q:
                        ax.plot(q, [p / 100 for p in range(len(q))], label=target)
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_xlabel("latency (ms, log)")
                ax.set_ylabel("fraction")
                ax.set_title(f"{case}, {n} conn", fontsize=9)
                ax.legend(fontsize=7)
                ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "latency_cdf.png", dpi=DPI)
        plt.close(fig)
        written.append("latency_cdf.png")
    pulls = [m for m in r.measurements if m.scenario == 5]
    if pulls:
        fig, ax = plt.subplots(figsize=(7, 1 + 0.3 * len(pulls)))
        _bars(ax, pulls, "Whole-image pulls (50 layers)", "seconds (median, min-max)")
        fig.tight_layout()
        fig.savefig(out / "image_pulls.png", dpi=DPI)
        plt.close(fig)
        written.append("image_pulls.png")
    return written
