"""A snapshot copied from the metadata store's summary tables, and a dry run's view of those
tables in place, judge exactly as a snapshot of the decoded records (the snapshot before the
summary existed): on a generated cache with indexes and their children, tag moves and
removals, evictions, malformed records and pulls not flushed yet, every report line under
every kind of policy is the same."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

from mirror.db.metadata import ManifestRecord, Metadata, TagRecord
from mirror.db.retention import Attachment, PolicyState
from mirror.db.roles import SnapshotRows
from mirror.oci.digest import Digest
from mirror.retention.lines import report_lines
from mirror.retention.policy import GLOBAL, RetentionPolicy
from mirror.retention.snapshot import Snapshot
from mirror.retention.view import ImageSource, SummaryView

NOW = 1_780_000_000.0
DAY = 86_400.0
IMAGE = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def digest(name: object) -> Digest:
    return Digest.parse("sha256:" + hashlib.sha256(str(name).encode()).hexdigest())


class FromRecords:
    """The metadata as a snapshot read it before the summary tables: every record decoded
    (the store's own readers), no summary to copy."""

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    def snapshot_rows(self) -> Iterator[SnapshotRows]:
        m = self._metadata
        yield SnapshotRows(
            manifests=[
                (str(d), r.media_type, r.size, r.cached_at, r.references) for d, r in m.manifests()
            ],
            tags=[(u, repo, t, r.digest) for u, repo, t, r in m.tags()],
            pulls=[(k[1], k[2], k[3], float(at)) for k, at in m.records(("pull",))],  # type: ignore[arg-type]
            untagged=[
                (u, repo, move.from_digest, move.at)
                for u, repo in sorted(m.repositories())
                for move in m.tag_history(u, repo)
                if move.from_digest is not None
            ],
        )

    def summary_database(self) -> Path | None:
        return None

    def pending_pulls(self) -> dict[tuple[str, str, str], float]:
        return self._metadata.pending_pulls()


def generate(metadata: Metadata, seed: int) -> None:
    """A cache written through the store's own calls, shaped by ``seed``."""
    rng = random.Random(seed)
    layers = [str(digest(f"layer-{i}")) for i in range(30)]
    for r in range(12):
        upstream, repo = ("docker.io", "hosted:acme")[r % 5 == 4], f"team{r}/app"
        for i in range(rng.randint(0, 25)):
            _image(metadata, rng, upstream, repo, f"{r}-{i}", tuple(rng.sample(layers, 2)))
        metadata.flush()
        if rng.random() < 0.3:  # pulls still batched in memory
            for i in range(3):
                metadata.record_pull(upstream, repo, digest(f"{r}-{i}"), NOW - i)


def _image(
    metadata: Metadata,
    rng: random.Random,
    upstream: str,
    repo: str,
    name: str,
    refs: tuple[str, ...],
) -> None:
    """One image (an index with two children, now and then) and what happens to it."""
    image = digest(name)
    refs += ("junk",) if rng.random() < 0.05 else ()
    age = rng.uniform(0, 200) * DAY
    metadata.set_manifest(image, ManifestRecord(IMAGE, 500 + len(refs), refs, NOW - age))
    target = str(image)
    if rng.random() < 0.2:
        children = [digest(f"{name}-{p}") for p in range(2)]
        for child in children:
            metadata.set_manifest(child, ManifestRecord(IMAGE, 300, refs, NOW - age))
        index = digest(f"{name}-index")
        record = ManifestRecord(INDEX, 200, tuple(map(str, children)), NOW - age)
        metadata.set_manifest(index, record)
        target = str(index)
    when = NOW - rng.uniform(0, 100) * DAY
    if rng.random() < 0.6:  # tags move between images
        metadata.set_tag(upstream, repo, f"v{rng.randint(0, 8)}", TagRecord(target, IMAGE, 5, when))
    if rng.random() < 0.5:
        metadata.record_pull(upstream, repo, Digest.parse(target), when)
    if rng.random() < 0.1:
        metadata.delete_tag(upstream, repo, f"v{rng.randint(0, 8)}", when)
    if rng.random() < 0.15:  # loses two tags, the later removal last
        for extra, at in (("x1", when + 2), ("x2", when + 1)):
            metadata.set_tag(upstream, repo, extra, TagRecord(target, IMAGE, 5, when))
            metadata.delete_tag(upstream, repo, extra, at)
    if rng.random() < 0.05:
        metadata.evict_image(upstream, repo, image)
    if rng.random() < 0.05:
        metadata.set_tag(upstream, repo, "bad", TagRecord("sha256:bad", IMAGE, 1, when))


STATE = PolicyState(
    (
        RetentionPolicy(GLOBAL, not_pulled_days=30, widened_at=NOW - 100 * DAY),
        RetentionPolicy("strict", not_tagged_days=10, exempt_tags=("v1",), match="all"),
        RetentionPolicy("cooling", not_pulled_days=1, widened_at=NOW - DAY),
        RetentionPolicy("keep"),
    ),
    (
        ("docker.io/team1/app", Attachment("strict", 0.0)),
        ("docker.io/team2/app", Attachment("cooling", 0.0)),
        ("docker.io/team3/app", Attachment("keep", 0.0)),
    ),
)


def lines(source: ImageSource) -> list[object]:
    try:
        return list(report_lines(source, STATE.governing, NOW, 7 * DAY))
    finally:
        source.close()


def test_a_snapshot_of_the_summary_judges_as_one_of_the_decoded_records(tmp_path: Path) -> None:
    for seed in range(4):
        metadata = Metadata(tmp_path / f"metadata-{seed}")
        try:
            generate(metadata, seed)
            decoded = lines(Snapshot(FromRecords(metadata), tmp_path))
            copied = lines(Snapshot(metadata, tmp_path))
            database = metadata.summary_database()
            assert database is not None
            viewed = lines(SummaryView(database, metadata.pending_pulls()))
            assert len(decoded) > 100
            assert {line[9] for line in decoded} >= {"keep", "delete"}  # type: ignore[index]
            assert copied == decoded, f"seed {seed}: copied"
            assert viewed == decoded, f"seed {seed}: viewed"
        finally:
            metadata.close()
