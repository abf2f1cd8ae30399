"""A small cache on which a dry run meets every retention rule: not pulled, not tagged,
exempt tags, the cooling period, a hosted repository, an index group, a global default and
per-repository policies. Run as a script (``python -m tests.unit.retention.every_rule DIR``)
it prints the dry run's report (with ``--delete``, a deleting run's report and audit events,
the cache's objects stocked first), so the expected report can come from another version."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.interface import BlobStore
from mirror.clock import ManualClock
from mirror.db.metadata import ManifestRecord, Metadata, TagRecord
from mirror.db.retention import RetentionStore
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.retention.audit import AuditLog
from mirror.retention.policy import PolicyEdit, RetentionPolicy
from mirror.retention.service import RetentionService

NOW = 1_700_000_000.0
DAY = 86_400.0
HUB = "docker.io"
HOSTED = "hosted:acme"
IMAGE = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def digest(name: str) -> Digest:
    """A digest named after ``name``."""
    return Digest.parse("sha256:" + hashlib.sha256(name.encode()).hexdigest())


def populate(metadata: Metadata) -> list[str]:
    """The images of the fixture, written through the metadata store's own calls; the names
    whose digests they cache (the content of each object is its name)."""
    names = ["layer"]

    def manifest(name: str, age_days: float, refs: tuple[str, ...] = (), kind: str = IMAGE) -> str:
        names.append(name)
        d = digest(name)
        metadata.set_manifest(d, ManifestRecord(kind, 500 + len(name), refs, NOW - age_days * DAY))
        return str(d)

    def tag(upstream: str, repo: str, name: str, target: str, days_ago: float) -> None:
        metadata.set_tag(upstream, repo, name, TagRecord(target, IMAGE, 500, NOW - days_ago * DAY))

    def pull(upstream: str, repo: str, target: str, days_ago: float) -> None:
        metadata.record_pull(upstream, repo, Digest.parse(target), NOW - days_ago * DAY)

    layer = str(digest("layer"))
    for repo in ("lib/global", "lib/strict", "lib/cooling", "lib/keepall"):
        fresh = manifest(f"{repo}-fresh", 100, (layer,))
        stale = manifest(f"{repo}-stale", 100, (layer,))
        never = manifest(f"{repo}-never", 60, (layer,))
        moved = manifest(f"{repo}-moved", 90, (layer,))
        tag(HUB, repo, "latest", fresh, 1)
        pull(HUB, repo, fresh, 1)
        tag(HUB, repo, "old", stale, 80)
        pull(HUB, repo, stale, 45)
        pull(HUB, repo, never, 70)
        tag(HUB, repo, "v1", moved, 80)
        metadata.delete_tag(HUB, repo, "v1", NOW - 20 * DAY)
        pull(HUB, repo, moved, 40)
        tag(HUB, repo, "release-1", manifest(f"{repo}-release", 200, (layer,)), 150)
        # An index and its two platforms, pulled through the index long ago.
        children = (manifest(f"{repo}-amd64", 70, (layer,)), manifest(f"{repo}-arm64", 70))
        index = manifest(f"{repo}-index", 70, children, INDEX)
        pull(HUB, repo, index, 35)
        pull(HUB, repo, children[1], 3 if repo == "lib/strict" else 50)
        tag(HUB, repo, "broken", "not-a-digest", 1)
        pull(HUB, repo, str(digest("not cached")), 1)
    pushed = manifest("hosted-app", 30, (layer,))
    tag(HOSTED, "app", "v1", pushed, 30)
    pull(HOSTED, "app", manifest("hosted-old", 90), 90)
    metadata.flush()
    pull(HUB, "lib/global", str(digest("lib/global-stale")), 2)  # batched, not flushed
    return names


def policies(state: RetentionStore) -> None:
    """A global default and per-repository policies of every kind."""
    edit = PolicyEdit(not_pulled_days=30, exempt_tags=("release-*",))
    state.edit("global", edit, NOW - 100 * DAY)
    state.create(
        RetentionPolicy("strict", not_pulled_days=10, not_tagged_days=10, match="all"),
        NOW - 100 * DAY,
    )
    state.attach("strict", f"{HUB}/lib/strict", NOW - 100 * DAY)
    state.create(RetentionPolicy("cooling", not_pulled_days=1), NOW - 2 * DAY)
    state.attach("cooling", f"{HUB}/lib/cooling", NOW - 2 * DAY)
    state.create(RetentionPolicy("keepall"), NOW - 100 * DAY)
    state.attach("keepall", f"{HUB}/lib/keepall", NOW - 100 * DAY)
    state.create(RetentionPolicy("hosted", not_tagged_days=5), NOW - 100 * DAY)
    state.attach("hosted", "acme/app", NOW - 100 * DAY)


async def stock(data_dir: Path, names: list[str]) -> None:
    """Put the fixture's objects in the cache of ``data_dir`` (each one's content is its
    name)."""
    store = FilesystemBlobStore(data_dir)
    for name in names:
        await store.put(digest(name), name.encode())


def service(
    data_dir: Path, names: list[str] | None = None, store: BlobStore | None = None
) -> tuple[RetentionService, Metadata]:
    """A retention service over a fresh fixture in ``data_dir`` (the names of its objects
    appended to ``names``), on ``store`` (the data directory's files by default)."""
    metadata = Metadata(data_dir / "metadata")
    state = RetentionStore(data_dir / "retention")
    written = populate(metadata)
    if names is not None:
        names += written
    policies(state)
    clock = ManualClock(NOW)
    audit = AuditLog(data_dir / "audit.log", clock)
    retention = RetentionService(
        metadata,
        store or FilesystemBlobStore(data_dir),
        state,
        audit,
        Metrics(),
        clock,
        in_use=lambda _d: False,
        cooling_period=7 * DAY,
    )
    return retention, metadata


def normalised(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` without its random run id."""
    return report | {"run": "RUN"}


def normalised_run(report: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """A deleting run's report and audit events without its random run id."""
    run = report["run"]
    return {
        "report": normalised(report),
        "audit": [e | {"run": "RUN"} if e.get("run") == run else e for e in events],
    }


async def _main(data_dir: Path, delete: bool) -> None:
    names: list[str] = []
    retention, metadata = service(data_dir, names)
    try:
        if delete:
            await stock(data_dir, names)
            report = (await retention.run(dry_run=False)).as_json()
            print(json.dumps(normalised_run(report, retention.audit_events()), indent=2))
            return
        report = (await retention.run(dry_run=True)).as_json()
        print(json.dumps(normalised(report), indent=2))
    finally:
        retention.close()
        metadata.close()


if __name__ == "__main__":
    asyncio.run(_main(Path(sys.argv[1]), "--delete" in sys.argv[2:]))
