"""Render a run's results as Markdown: machine, targets (met or missed), every measurement
with median, min-max and ratios to each reference, and the correctness facts."""

from __future__ import annotations

import math

from benchmarks.results import REFERENCES, Measurement, Results


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _ratio(m: Measurement, ref: Measurement | None) -> str:
    if ref is None or m is ref or not ref.values or ref.median == 0:
        return ""
    return f"{m.median / ref.median:.2f}x"


def measurements_table(r: Results) -> list[str]:
    """One row per measurement; ratio columns divide its median by each reference's."""
    lines = [
        "| # | Case | Target | Metric | Median | Min-max | n | ÷ proxy | ÷ upstream | ÷ nginx "
        "| ÷ docker-registry |",
        "|---|------|--------|--------|-------:|--------:|--:|--------:|-----------:|--------:"
        "|------------------:|",
    ]
    for m in sorted(r.measurements, key=lambda m: m.scenario):
        refs = [r.get(m.scenario, m.case, ref, m.metric) for ref in REFERENCES]
        ratios = " | ".join(_ratio(m, ref) for ref in refs)
        lines.append(
            f"| {m.scenario} | {m.case} | {m.target} | {m.metric} ({m.unit}) | "
            f"{_num(m.median)} | {_num(m.low)}-{_num(m.high)} | {len(m.values)} | {ratios} |"
        )
    return lines


def targets_table(r: Results) -> list[str]:
    """The issue's targets: measured value and met / missed."""
    lines = ["| # | Target | Measured | Met |", "|---|--------|---------:|:---:|"]
    for c in r.checks:
        met = "n/a" if c.met is None else ("yes" if c.met else "**no**")
        lines.append(f"| {c.scenario} | {c.target} | {c.measured} | {met} |")
    return lines


def facts_table(r: Results) -> list[str]:
    """Correctness facts grouped per (scenario, target, name), one value per repetition."""
    grouped: dict[tuple[int, str, str], list[float]] = {}
    expected: dict[tuple[int, str, str], float | None] = {}
    holds: dict[tuple[int, str, str], bool] = {}
    for f in r.facts:
        key = (f.scenario, f.target, f.name)
        grouped.setdefault(key, []).append(f.value)
        expected[key] = f.expected
        holds[key] = holds.get(key, True) and f.holds is not False
    lines = [
        "| # | Target | Fact | Values | Expected |",
        "|---|--------|------|-------:|---------:|",
    ]
    for key, values in grouped.items():
        want = expected[key]
        shown = ", ".join(f"{v:.3g}" for v in values)
        if want is None:
            mark = "(reference)"
        else:
            mark = f"{want:g}" + ("" if holds[key] else " **violated**")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {shown} | {mark} |")
    return lines


_HEADLINE = ("date", "nproc", "memory", "cpu", "kernel")


# Each path's unavoidable parts: the machine limits (benchmarks.machine.limits) it must pass
# through, one after the other; (scenario, case, target) of its throughput measurement.
PATHS: tuple[tuple[str, tuple[int, str, str], tuple[str, ...]], ...] = (
    (
        "warm, encryption on",
        (1, "large blob, warm", "mirror, encryption on (default)"),
        ("AES-256-GCM, one core", "nginx sendfile"),
    ),
    (
        "warm, encryption off",
        (1, "large blob, warm", "mirror, encryption off"),
        ("nginx sendfile",),
    ),
    (
        "cold",
        (2, "large blob, cold", "mirror"),
        ("loopback relay (user space)", "sha256, one core", "AES-256-GCM, one core"),
    ),
    (
        "cold, chunked parallel Range",
        (3, "chunked parallel Range, cold", "mirror"),
        ("loopback relay (user space)", "sha256, one core", "AES-256-GCM, one core"),
    ),
)


def limits_section(r: Results) -> list[str]:
    """The machine's limits in this run, and each path as a fraction of the sum of its parts."""
    if not r.limits:
        return []
    out = ["## Machine limits (measured in this run)", "", "| Limit | GB/s |", "|---|---:|"]
    out += [f"| {name} | {rate / 1e9:.2f} |" for name, rate in r.limits.items()]
    out += [
        "",
        "Each path as a fraction of the sum of its unavoidable parts: the seconds per byte of "
        "every limit it passes through, added (as if done one after the other on one core), "
        "over the measured seconds per byte (1.0 = at that bound; above 1 = overlapped on "
        "several cores).",
        "",
        "| Path | Unavoidable parts | Bound (MB/s) | Measured (MB/s) | Fraction |",
        "|---|---|---:|---:|---:|",
    ]
    for name, (scenario, case, target), parts in PATHS:
        m = r.get(scenario, case, target, "throughput")
        if m is None or not m.values or not all(p in r.limits for p in parts):
            continue
        bound = 1 / sum(1 / r.limits[p] for p in parts)
        measured = m.median * 1e6
        out.append(
            f"| {name} | {' + '.join(parts)} | {bound / 1e6:,.0f} | {measured / 1e6:,.0f} "
            f"| {measured / bound:.2f} |"
        )
    return [*out, ""]


def render(r: Results, plots: list[str], titles: dict[int, str]) -> str:
    """The whole Markdown report."""
    m = r.machine
    s = r.settings
    out = [
        f"# Benchmark results ({'quick' if s.get('quick') else 'full'} mode)",
        "",
        f"{m.get('date', '?')} on {m.get('nproc', '?')} x {m.get('cpu', '?')}, "
        f"{m.get('memory', '?')} RAM, Linux {m.get('kernel', '?')}; all servers and clients on "
        "127.0.0.1 of this one machine.",
        "",
        *(f"- {k}: {v}" for k, v in m.items() if k not in _HEADLINE),
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in s.items()),
        "",
        "Scenarios: " + "; ".join(f"{n}. {titles[n]}" for n in r.scenarios_run if n in titles),
        "",
        *limits_section(r),
        "## Targets",
        "",
        *targets_table(r),
        "",
        "## Measurements",
        "",
        "Median and min-max over the repetitions (targets' order rotated each time); "
        "`÷ X` is this row's median divided by reference X's median for the same case and "
        "metric (for times and latencies lower is better, so < 1x favours this row).",
        "",
        *measurements_table(r),
        "",
        "## Correctness facts",
        "",
        *facts_table(r),
        "",
    ]
    if plots:
        out += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    if r.notes:
        out += ["## Notes", "", *(f"- {n}" for n in r.notes), ""]
    return "\n".join(out)
