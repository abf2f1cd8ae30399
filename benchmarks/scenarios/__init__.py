"""One module per scenario of issue 6; each has ``NUMBER``, ``TITLE`` and ``run(bench)``.

Scenario 7 (a retention dry run over 100,000 cached images) is not here yet: the harness was
written before retention landed; add it as a module with the same shape.
"""

from __future__ import annotations

from types import ModuleType

from benchmarks.scenarios import cold_blob, herd, images, manifests, memory, warm_blob

SCENARIOS: dict[int, ModuleType] = {
    m.NUMBER: m for m in (warm_blob, cold_blob, herd, manifests, images, memory)
}
