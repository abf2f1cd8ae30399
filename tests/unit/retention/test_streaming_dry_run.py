"""A streamed dry run (one repository in memory at a time) decides exactly what the dry run
of the version before streaming decided, on a fixture with every rule kind; its JSON text is
``json.dumps(report, indent=2)``'s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.clock import ManualClock
from mirror.db.metadata import Metadata
from mirror.db.retention import RetentionStore
from mirror.metrics import Metrics
from mirror.retention.audit import AuditLog
from mirror.retention.report import json_chunks
from mirror.retention.service import RetentionService

from .every_rule import normalised, service

# Written by ``every_rule.py`` run on the code before streaming (``git archive main``).
EXPECTED = Path(__file__).parents[2] / "data" / "retention" / "every-rule-dry-run.json"


def leftovers(directory: Path) -> list[Path]:
    """Snapshot indexes left in ``directory``."""
    return list(directory.glob("retention-*.db"))


async def streamed(retention: RetentionService, batch: int) -> str:
    async with retention.dry_run(batch=batch) as run:
        return "".join([chunk async for chunk in json_chunks(run.head, run.batches)])


async def test_streamed_dry_run_gives_the_decisions_of_the_unstreamed_one(
    tmp_path: Path,
) -> None:
    expected = json.loads(EXPECTED.read_text())
    retention, metadata = service(tmp_path)
    retention.scratch = tmp_path
    try:
        for batch in (1, 7, 1000):
            text = await streamed(retention, batch)
            report: dict[str, Any] = json.loads(text)
            assert normalised(report) == expected
            assert text == json.dumps(report, indent=2)
        assert normalised((await retention.run(dry_run=True)).as_json()) == expected
        assert not leftovers(tmp_path)  # the snapshot's index is gone
    finally:
        retention.close()
        metadata.close()


async def test_streamed_dry_run_of_an_empty_cache_is_the_empty_report(tmp_path: Path) -> None:
    clock = ManualClock()
    metadata = Metadata(tmp_path / "metadata")
    retention = RetentionService(
        metadata,
        FilesystemBlobStore(tmp_path),
        RetentionStore(tmp_path / "retention"),
        AuditLog(tmp_path / "audit.log", clock),
        Metrics(),
        clock,
        in_use=lambda _d: False,
        cooling_period=0,
    )
    try:
        text = await streamed(retention, 10)
        report = json.loads(text)
        assert report["images"] == [] and report["dry_run"] is True
        assert json.dumps(report, indent=2) == text
    finally:
        retention.close()
        metadata.close()
