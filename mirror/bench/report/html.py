"""A self-contained HTML report: the table, the ratios, the machine and every plot inlined
as a ``data:`` URI, so the one file can be mailed or attached with nothing to fetch."""

from __future__ import annotations

import base64
import html
import json

from mirror.bench.report.table import HEADER, UNITS, cells
from mirror.bench.results import Results

STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#eee}"
)


def _table(header: list[str], lines: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in line) + "</tr>"
        for line in lines
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def report_html(results: Results, pngs: dict[str, bytes]) -> str:
    """The HTML page (latencies in ms)."""
    document = results.to_dict()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mirror bench</title>",
        f"<style>{STYLE}</style></head><body><h1>mirror bench</h1>",
        f"<p>started {html.escape(results.started)}; targets: "
        + ", ".join(f"{html.escape(k)} = {html.escape(v)}" for k, v in results.targets.items())
        + "</p>",
        _table(list(HEADER), [cells(row) for row in results.rows]),
        f"<p>{html.escape(UNITS)}</p>",
    ]
    if document["comparisons"]:
        parts.append("<h2>Compared with the first target</h2>")
        parts.append(
            _table(
                ["target", "workload", "case", "p50 ratio", "throughput ratio"],
                [
                    [
                        c["target"],
                        c["workload"],
                        c["case"],
                        _ratio(c["p50_ratio"]),
                        _ratio(c["throughput_ratio"]),
                    ]
                    for c in document["comparisons"]
                ],
            )
        )
    for name, png in pngs.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
            f"src='data:image/png;base64,{data}'>"
        )
    parts.append("<h2>Machine and plan</h2><pre>")
    facts = {"machine": results.machine, "plan": results.plan, "notes": results.notes}
    parts.append(html.escape(json.dumps(facts, indent=2, default=str)))
    parts.append("</pre></body></html>")
    return "\n".join(parts)
