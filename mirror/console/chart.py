"""Line charts as inline SVG, drawn on the server (no script, no external service)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 600, 140


@dataclass(frozen=True, slots=True)
class Series:
    """One line: its name (legend and accessible label), colour and points ``(t, value)``;
    a dashed line tells a second figure of the same colour apart."""

    name: str
    colour: str
    points: tuple[tuple[float, float], ...]
    dashed: bool = False


def polyline(points: Sequence[tuple[float, float]], t0: float, t1: float, top: float) -> str:
    """SVG ``points`` of a line scaled into the chart (time across, 0..``top`` up)."""
    span = (t1 - t0) or 1.0
    scale = top or 1.0
    return " ".join(
        f"{(t - t0) / span * WIDTH:.1f},{HEIGHT - v / scale * HEIGHT:.1f}" for t, v in points
    )


def chart(series: Sequence[Series]) -> dict[str, object]:
    """What the template draws: each line's SVG points, and the top of the scale."""
    times = [t for s in series for t, _ in s.points]
    values = [v for s in series for _, v in s.points]
    t0, t1 = (min(times), max(times)) if times else (0.0, 1.0)
    top = max(values) if values else 0.0
    lines = [
        (s.name, s.colour, polyline(s.points, t0, t1, top), "6 4" if s.dashed else "none")
        for s in series
    ]
    return {"width": WIDTH, "height": HEIGHT, "top": top, "lines": lines, "empty": len(times) < 2}


def rates(
    samples: Sequence[tuple[float, float]],
) -> tuple[tuple[float, float], ...]:
    """Per-second rates between consecutive ``(t, counter)`` samples (a reset counts as 0)."""
    found = []
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if t1 > t0:
            found.append((t1, max(v1 - v0, 0.0) / (t1 - t0)))
    return tuple(found)
