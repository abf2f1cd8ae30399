"""One module per scenario of issue 6 (and 8, of issue 11; 10-13 of issues 14 and 15); each
has ``NUMBER``, ``TITLE`` and ``run(bench)``."""

from __future__ import annotations

from types import ModuleType

from benchmarks.scenarios import (
    bundles,
    cold_blob,
    herd,
    images,
    lanes,
    manifests,
    memory,
    pushes,
    retention,
    tier,
    wan_upstream,
    warm_blob,
    workers,
)

SCENARIOS: dict[int, ModuleType] = {
    m.NUMBER: m
    for m in (
        warm_blob,
        cold_blob,
        herd,
        manifests,
        images,
        memory,
        retention,
        pushes,
        bundles,
        tier,
        workers,
        lanes,
        wan_upstream,
    )
}
