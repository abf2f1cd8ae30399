"""What a benchmark run does: the workloads and their bounds. Defaults are small so a run
without flags finishes in seconds and puts little load on someone else's registry."""

from __future__ import annotations

from dataclasses import dataclass

# In the order they run; "all" in --workload names every one.
WORKLOADS = ("pull", "blob", "range", "manifest", "sweep", "push", "rollout", "cold")
DEFAULT_WORKLOADS = ("pull", "blob", "range", "manifest")
NEEDS_PUSH = frozenset({"push"})
MIB = 1 << 20


@dataclass(frozen=True)
class Plan:
    """Every knob of a run (see ``mirror bench --help`` for what each means)."""

    workloads: tuple[str, ...] = DEFAULT_WORKLOADS
    requests: int = 20
    pulls: int = 3
    connections: int = 8
    pull_concurrency: int = 3
    rate: float | None = None
    duration: float = 30.0
    deadline: float = 300.0
    sweep: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    chunk: int = 8 * MIB
    range_parallel: int = 8
    clients: int = 8
    push_size: int = MIB
    push_chunk: int = 256 * 1024
    push_repo: str = "bench/push"
    allow_push: bool = False
    seed: int = 16
    layers: int = 3
    layer_size: int = 4 * MIB
    warmup: bool = True

    def mode(self, workload: str) -> str:
        """``open`` when a rate is set and the workload is request by request, else
        ``closed``."""
        return "open" if self.rate and workload in ("manifest", "blob") else "closed"
