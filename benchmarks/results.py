"""What a run produces: measurements (repeated samples), facts (correctness counts) and checks
of the issue's targets, with JSON round-tripping for the report and the quick test."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROXY = "distribution proxy"
UPSTREAM = "upstream (direct)"
NGINX = "nginx sendfile"
# docker-registry as a hosted registry (filesystem storage, no proxy): the push reference.
DISTRIBUTION = "docker-registry (hosted)"
REFERENCES = (PROXY, UPSTREAM, NGINX, DISTRIBUTION)


@dataclass
class Measurement:
    """Samples of one metric for one target in one case of a scenario."""

    scenario: int
    case: str
    target: str
    metric: str
    unit: str
    higher_is_better: bool
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")


@dataclass
class Fact:
    """A count or ratio that must hold whatever the speed (e.g. upstream GETs per blob)."""

    scenario: int
    target: str
    name: str
    value: float
    expected: float | None = None

    @property
    def holds(self) -> bool | None:
        return None if self.expected is None else abs(self.value - self.expected) < 1e-9


@dataclass
class Check:
    """One target of the issue, the measured value and whether it is met."""

    scenario: int
    target: str
    measured: str
    met: bool | None


@dataclass
class Results:
    """Everything one run measured, plus the machine it ran on and the extra series for plots."""

    machine: dict[str, str] = field(default_factory=dict)
    # The machine's own limits measured in this run (bytes/s), see benchmarks.machine.limits.
    limits: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    # Latency quantiles (ms) per "case / target / connections" for CDF plots.
    latency_quantiles: dict[str, list[float]] = field(default_factory=dict)
    scenarios_run: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        scenario: int,
        case: str,
        target: str,
        metric: str,
        unit: str,
        value: float,
        *,
        higher_is_better: bool,
    ) -> Measurement:
        """Append ``value`` to the matching measurement (created on first use)."""
        for m in self.measurements:
            if (m.scenario, m.case, m.target, m.metric) == (scenario, case, target, metric):
                m.values.append(value)
                return m
        m = Measurement(scenario, case, target, metric, unit, higher_is_better, [value])
        self.measurements.append(m)
        return m

    def get(self, scenario: int, case: str, target: str, metric: str) -> Measurement | None:
        """The measurement with these keys, if any."""
        for m in self.measurements:
            if (m.scenario, m.case, m.target, m.metric) == (scenario, case, target, metric):
                return m
        return None

    def fact(
        self, scenario: int, target: str, name: str, value: float, expected: float | None = None
    ) -> None:
        """Record a correctness fact."""
        self.facts.append(Fact(scenario, target, name, value, expected))

    def save(self, path: Path) -> None:
        """Write as JSON."""
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Results:
        """Read what :meth:`save` wrote."""
        doc = json.loads(path.read_text())
        return cls(
            machine=doc["machine"],
            limits=doc.get("limits", {}),
            settings=doc["settings"],
            measurements=[Measurement(**m) for m in doc["measurements"]],
            facts=[Fact(**f) for f in doc["facts"]],
            checks=[Check(**c) for c in doc["checks"]],
            latency_quantiles=doc["latency_quantiles"],
            scenarios_run=doc["scenarios_run"],
            notes=doc["notes"],
        )
