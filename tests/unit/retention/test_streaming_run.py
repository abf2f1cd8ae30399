"""A deleting run judges a repository at a time from a snapshot, as the dry run does: it deletes
exactly what the version before streaming deleted (same report, same audit lines), exactly
what a dry run reports, holds no more memory for a cache ten times the size, and a store
failing midway leaves what was deleted deleted and the rest intact for the next run."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from benchmarks.scenarios.retention import populate as populate_bulk
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.clock import ManualClock
from mirror.db.metadata import ManifestRecord, Metadata
from mirror.db.retention import RetentionStore
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.retention.audit import AuditLog
from mirror.retention.inventory import Inventory
from mirror.retention.policy import PolicyEdit
from mirror.retention.service import RetentionService
from mirror.retention.snapshot import Snapshot

from .every_rule import DAY, HUB, IMAGE, NOW, digest, normalised, normalised_run, service, stock

# Written by ``every_rule.py --delete`` run on the code before streaming (``git archive``).
EXPECTED = Path(__file__).parents[2] / "data" / "retention" / "every-rule-run.json"
# Images of the memory fixture that its policy deletes (the same at every size).
STALE = 200


def leftovers(directory: Path) -> list[Path]:
    """Snapshot indexes left in ``directory``."""
    return list(directory.glob("retention-*.db"))


async def test_deleting_run_deletes_what_the_run_before_streaming_deleted(tmp_path: Path) -> None:
    names: list[str] = []
    retention, metadata = service(tmp_path, names)
    retention.scratch = tmp_path
    await stock(tmp_path, names)
    try:
        report = (await retention.run(dry_run=False)).as_json()
        assert normalised_run(report, retention.audit_events()) == json.loads(EXPECTED.read_text())
        assert not leftovers(tmp_path)
    finally:
        retention.close()
        metadata.close()


def _evicted(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["repository"], e["digest"]) for e in events if e["event"] == "evict-image"}


async def test_deleting_run_deletes_exactly_what_the_dry_run_reported(tmp_path: Path) -> None:
    names: list[str] = []
    retention, metadata = service(tmp_path, names)
    await stock(tmp_path, names)
    try:
        dry = (await retention.run(dry_run=True)).as_json()
        report = (await retention.run(dry_run=False)).as_json()
        assert normalised(report)["images"] == normalised(dry)["images"]
        selected = {
            (i["repository"], i["digest"]) for i in dry["images"] if i["action"] == "delete"
        }
        assert selected and _evicted(retention.audit_events()) == selected
        assert report["evicted"] == len(selected)
        after = (await retention.run(dry_run=True)).as_json()
        left = {(i["repository"], i["digest"]) for i in after["images"]}
        assert not left & selected, "an evicted image is still cached"
    finally:
        retention.close()
        metadata.close()


def _memory_fixture(data_dir: Path, images: int, now: float) -> None:
    """``images`` recently pulled images (kept), and ``STALE`` images pulled 60 days
    ago in one more repository (deleted), with their manifests in the cache."""
    populate_bulk(data_dir, images, now)
    metadata = Metadata(data_dir / "metadata")
    try:
        for i in range(STALE):
            d = digest(f"stale-{i}")
            metadata.set_manifest(d, ManifestRecord(IMAGE, 10, (), now - 90 * DAY))
            metadata.record_pull(HUB, "stale/app", d, now - 60 * DAY)
        metadata.flush()
    finally:
        metadata.close()
    state = RetentionStore(data_dir / "retention")
    state.edit("global", PolicyEdit(not_pulled_days=30), now - 100 * DAY)
    state.close()


async def _peak_of_run(data_dir: Path, images: int) -> tuple[int, dict[str, Any]]:
    now = 1_780_000_000.0
    _memory_fixture(data_dir, images, now)
    store = FilesystemBlobStore(data_dir)
    for i in range(STALE):
        await store.put(digest(f"stale-{i}"), f"stale-{i}".encode())
    clock = ManualClock(now)
    metadata = Metadata(data_dir / "metadata")
    retention = RetentionService(
        metadata,
        store,
        RetentionStore(data_dir / "retention"),
        AuditLog(data_dir / "audit.log", clock),
        Metrics(),
        clock,
        in_use=lambda _d: False,
        cooling_period=7 * DAY,
    )
    try:
        tracemalloc.start()
        try:
            report = await retention.run(dry_run=False)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak, {"evicted": len(report.outcome.evicted), "images": report.images.count}
    finally:
        retention.close()
        metadata.close()


async def test_deleting_run_memory_does_not_grow_with_the_cache(tmp_path: Path) -> None:
    small, small_report = await _peak_of_run(tmp_path / "small", 2_000)
    large, large_report = await _peak_of_run(tmp_path / "large", 20_000)
    assert small_report == {"evicted": STALE, "images": 2_000 + STALE}
    assert large_report == {"evicted": STALE, "images": 20_000 + STALE}
    # Ten times the images: the inventory held whole took 6x (the run judges one
    # repository at a time, and its report's lines are on disk).
    print(f"tracemalloc peak: {small} B at 2,000 images, {large} B at 20,000")
    assert large < 2 * small, (small, large)


class FailingStore(FilesystemBlobStore):
    """The cache's files, with a disk that fails after ``allowed`` deletions (``healthy``
    again when told)."""

    def __init__(self, root: Path, allowed: int) -> None:
        super().__init__(root)
        self.allowed = allowed
        self.failed: Digest | None = None

    async def delete(self, digest: Digest) -> bool:
        """Delete as the file store does, until the disk fails."""
        if self.allowed == 0:
            self.failed = digest
            raise OSError(5, "Input/output error")
        self.allowed -= 1
        return await super().delete(digest)


def _stored(data_dir: Path, names: list[str]) -> set[str]:
    store = FilesystemBlobStore(data_dir)
    return {str(digest(n)) for n in names if store.path(digest(n)).exists()}


async def test_a_store_failing_midway_leaves_the_deleted_deleted_and_the_rest_for_next_run(
    tmp_path: Path,
) -> None:
    clean_dir, failing_dir = tmp_path / "clean", tmp_path / "failing"
    clean_names: list[str] = []
    clean, clean_metadata = service(clean_dir, clean_names)
    await stock(clean_dir, clean_names)
    names: list[str] = []
    disk = FailingStore(failing_dir, 3)
    failing, metadata = service(failing_dir, names, disk)
    failing.scratch = failing_dir
    await stock(failing_dir, names)
    try:
        await clean.run(dry_run=False)
        everything = _stored(failing_dir, names)
        with pytest.raises(OSError):
            await failing.run(dry_run=False)
        assert not leftovers(failing_dir)
        events = failing.audit_events()
        deleted = {e["digest"] for e in events if e["event"].startswith("delete-")}
        assert len(deleted) == 3
        assert everything - _stored(failing_dir, names) == deleted  # audited = gone
        assert not [e for e in events if e["event"] == "run"]  # the run did not finish
        # The next run judges the rest again and ends where one clean run ends, but for
        # the object whose deletion failed: its record went first, so nothing refers to it
        # (an orphan, for the capacity limit's collection of orphans).
        disk.allowed = -1
        await failing.run(dry_run=False)
        assert _evicted(failing.audit_events()) == _evicted(clean.audit_events())
        assert disk.failed is not None and metadata.manifest(disk.failed) is None
        assert _stored(failing_dir, names) == _stored(clean_dir, clean_names) | {str(disk.failed)}
        dry = (await failing.run(dry_run=True)).as_json()
        clean_dry = (await clean.run(dry_run=True)).as_json()
        assert normalised(dry)["images"] == normalised(clean_dry)["images"]
    finally:
        for opened in (clean, failing, clean_metadata, metadata):
            opened.close()


def test_a_digests_count_is_its_images_and_the_records_referring_to_it(tmp_path: Path) -> None:
    """The count the collector reads from the snapshot is the one it counted over the whole
    inventory before: one per repository holding the digest as an image (tagged, pulled or an
    index's child), one per manifest record referring to it."""
    names: list[str] = []
    retention, metadata = service(tmp_path, names)
    try:
        inventory = Inventory.load(metadata, NOW)
        counted: Counter[Digest] = Counter(i.digest for i in inventory.images)
        for references in inventory.references.values():
            counted.update(references)
        snapshot = Snapshot(metadata, tmp_path)
        try:
            for d in {digest(n) for n in [*names, "not cached"]}:
                assert snapshot.references(str(d)) == counted[d], d
        finally:
            snapshot.close()
        assert max(counted.values()) > 1  # the shared layer, and index children
    finally:
        retention.close()
        metadata.close()
