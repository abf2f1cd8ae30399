"""Regenerate the README's benchmark table from a run's ``results.json``: the block between
``<!-- benchmarks:begin -->`` and ``<!-- benchmarks:end -->`` is replaced by the machine, its
measured limits and every target of the run, met or missed."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import targets_table
from benchmarks.results import Results

BEGIN = "<!-- benchmarks:begin -->"
END = "<!-- benchmarks:end -->"


class MissingMarkers(ValueError):
    """The README has no (or a broken) pair of benchmark markers."""


def block(r: Results, published: str) -> list[str]:
    """The README's lines for ``r`` (``published``: where the whole report is committed)."""
    m, s = r.machine, r.settings
    mode = "quick" if s.get("quick") else "full"
    start, end = m.get("load average at start", "?"), m.get("load average at end", "?")
    lines = [
        f"A {mode} run of `python -m benchmarks run` ({m.get('date', '?')}, mirror commit "
        f"{m.get('mirror commit', '?')}, {m.get('nproc', '?')} x {m.get('cpu', '?')} "
        f"({m.get('cpu flags', '?')}), load average {start} at the start and {end} at the "
        "end; every server and client on 127.0.0.1 of this one shared "
        f"machine, so read the ratios, not the absolute figures). The whole report, with every "
        f"measurement and its min-max: [{published}]({published}).",
        "",
    ]
    if r.limits:
        limits = ", ".join(f"{name} {rate / 1e9:.2f} GB/s" for name, rate in r.limits.items())
        lines += [f"The machine's own limits in the same run: {limits}.", ""]
    return [*lines, *targets_table(r)]


def replace_block(text: str, lines: list[str]) -> str:
    """``text`` with the marked block replaced by ``lines`` (the markers stay)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise MissingMarkers(f"the README needs {BEGIN} ... {END} around its benchmark table")
    head = text[: start + len(BEGIN)]
    return head + "\n" + "\n".join(lines) + "\n" + text[end:]


def regenerate(results: Path, readme: Path, published: str) -> None:
    """Rewrite ``readme``'s marked block from the run in ``results`` (its results.json)."""
    r = Results.load(results / "results.json")
    readme.write_text(replace_block(readme.read_text(), block(r, published)))
