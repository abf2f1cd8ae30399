"""Retention's summary tables say what the metadata records say, whatever wrote them: every
write of the store keeps both in one transaction (a write that fails halfway leaves
neither), and a database written before the tables existed, or marked out of date, gets them
rebuilt from its records when the store opens."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mirror.db.metadata import ManifestRecord, Metadata, TagRecord
from mirror.db.summary import FORGET, is_digest
from mirror.oci.digest import Digest

OCI = "application/vnd.oci.image.manifest.v1+json"
V0 = Path(__file__).resolve().parents[2] / "data" / "datadir-v0"
A, B, C, D = (Digest.parse("sha256:" + ch * 64) for ch in "abcd")

Rows = dict[str, list[tuple[Any, ...]]]


def summarised(metadata: Metadata) -> Rows:
    """What the summary tables give (``snapshot_rows``), each kind sorted."""
    found: Rows = {"manifests": [], "tags": [], "pulls": [], "untagged": []}
    for rows in metadata.snapshot_rows():
        for kind in found:
            found[kind] += getattr(rows, kind)
    return {kind: sorted(rows) for kind, rows in found.items()}


def from_records(metadata: Metadata) -> Rows:
    """The same rows read from the records themselves (each one decoded), as a snapshot keeps
    them: under a digest only, a manifest's references that are digests."""
    # Stored last pulls only (batched ones are not summarised until flushed).
    pulls = [(*key[1:], at) for key, at in metadata.records(("pull",)) if is_digest(key[3])]
    untagged = [
        (upstream, repo, move.from_digest, move.at)
        for upstream, repo in set(metadata.repositories())
        for move in metadata.tag_history(upstream, repo)
        if is_digest(move.from_digest)
    ]
    return {
        "manifests": sorted(
            (str(d), r.media_type, r.size, r.cached_at, tuple(map(str, r.referenced())))
            for d, r in metadata.manifests()
        ),
        "tags": sorted(
            (u, repo, t, r.digest) for u, repo, t, r in metadata.tags() if is_digest(r.digest)
        ),
        "pulls": sorted(pulls),
        "untagged": sorted(untagged),
    }


def tag(digest: Digest | str, at: float = 1.0) -> TagRecord:
    return TagRecord(str(digest), OCI, 10, at)


def test_the_summary_says_what_the_records_say_after_every_kind_of_write(
    tmp_path: Path,
) -> None:
    metadata = Metadata(tmp_path / "metadata")
    steps: list[Callable[[], object]] = [
        lambda: metadata.set_manifest(A, ManifestRecord(OCI, 10, (str(B), "junk"), 5.0)),
        lambda: metadata.set_manifest(B, ManifestRecord(OCI, 7, (), 6.0)),
        lambda: metadata.set_manifest(A, ManifestRecord(OCI, 11, (str(C),), 7.0)),
        lambda: metadata.set_tag("h", "r", "v1", tag(A)),
        lambda: metadata.set_tag("h", "r", "v1", tag(B, 2.0)),  # moves away from A
        lambda: metadata.set_tag("h", "r", "bad", tag("sha256:nope")),
        lambda: metadata.touch_tag("h", "r", "v1", 3.0),
        lambda: metadata.set_tag("h", "q", "v2", tag(A, 4.0)),
        lambda: metadata.delete_tag("h", "q", "v2", 5.0),  # removed from A
        lambda: metadata.record_pull("h", "r", A, 40.0),
        lambda: metadata.record_pull("h", "q", C, 41.0),  # pending: no row until flushed
        metadata.flush,
        lambda: metadata.record_pull("h", "r", A, 42.0),
        metadata.flush,
        lambda: metadata.evict_image("h", "r", A, ("v1",)),
        lambda: metadata.set_tag("g", "r", "v1", tag(D)),
        lambda: metadata.evict_image("h", "r", B),
        lambda: metadata.forget_empty_repositories({("h", "r"), ("h", "q")}),
        lambda: metadata.forget_upstream("g"),
        lambda: metadata.delete_manifest(B),
    ]
    try:
        for number, step in enumerate(steps):
            step()
            assert summarised(metadata) == from_records(metadata), f"after step {number}"
        assert summarised(metadata)["manifests"] == [(str(A), OCI, 11, 7.0, (str(C),))]
    finally:
        metadata.close()


def test_a_tag_history_past_its_limit_is_summarised_as_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mirror.db.metadata.TAG_HISTORY_LIMIT", 3)
    metadata = Metadata(tmp_path / "metadata")
    try:
        for i, target in enumerate((A, B, C, D, A, B)):
            metadata.set_tag("h", "r", "v", tag(target, float(i)))
            assert summarised(metadata) == from_records(metadata), f"after move {i}"
        assert len(metadata.tag_history("h", "r")) == 3
    finally:
        metadata.close()


def _refuse(database: Path, table: str) -> None:
    """Make the disk refuse the next row of ``table`` (as a full disk refuses a write)."""
    with sqlite3.connect(database) as db:
        db.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table}"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )


@pytest.mark.parametrize(
    ("table", "write"),
    [
        ("retention_tag", lambda m: m.set_tag("h", "r", "v2", tag(B))),
        ("retention_manifest", lambda m: m.set_manifest(C, ManifestRecord(OCI, 1, (), 1.0))),
        ("retention_untagged", lambda m: m.set_tag("h", "r", "v1", tag(B))),
    ],
    ids=["tag", "manifest", "tag-move"],
)
def test_a_write_refused_halfway_keeps_neither_the_record_nor_its_summary(
    tmp_path: Path, table: str, write: Any
) -> None:
    metadata = Metadata(tmp_path / "metadata")
    try:
        metadata.set_manifest(A, ManifestRecord(OCI, 10, (), 5.0))
        metadata.set_tag("h", "r", "v1", tag(A))
        before = summarised(metadata)
        _refuse(tmp_path / "metadata" / "cache.db", table)
        with pytest.raises(sqlite3.DatabaseError):
            write(metadata)
        assert summarised(metadata) == from_records(metadata) == before
    finally:
        metadata.close()
    reopened = Metadata(tmp_path / "metadata")
    try:
        assert summarised(reopened) == from_records(reopened) == before
    finally:
        reopened.close()


def test_a_process_killed_between_a_record_and_its_summary_leaves_neither(
    tmp_path: Path,
) -> None:
    metadata = Metadata(tmp_path / "metadata")
    metadata.set_tag("h", "r", "v1", tag(A))
    metadata.close()
    # The record is written and the process dies before its summary row (and the commit).
    killed = f"""
import os
from collections.abc import Callable
from pathlib import Path
from mirror.db.metadata import Metadata, TagRecord
metadata = Metadata(Path({str(tmp_path / "metadata")!r}))
with metadata._db.transact():
    metadata._db.set(("tag", "h", "r", "v2"), TagRecord({str(B)!r}, "x", 1, 2.0))
    os._exit(9)
"""
    assert subprocess.run([sys.executable, "-c", killed], check=False).returncode == 9
    reopened = Metadata(tmp_path / "metadata")
    try:
        assert reopened.tag("h", "r", "v2") is None
        assert summarised(reopened) == from_records(reopened)
        assert summarised(reopened)["tags"] == [("h", "r", "v1", str(A))]
    finally:
        reopened.close()


def _tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master")}


def test_a_cache_written_before_the_summary_gets_it_when_opened(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(V0, data_dir, ignore=shutil.ignore_patterns("*.py"))
    database = data_dir / "metadata" / "cache.db"
    assert not {t for t in _tables(database) if t.startswith("retention_")}
    metadata = Metadata(data_dir / "metadata")
    try:
        rows = summarised(metadata)
        assert rows == from_records(metadata)
        assert rows["tags"] and rows["manifests"] and rows["pulls"] and rows["untagged"]
    finally:
        metadata.close()


@pytest.mark.parametrize(
    "staleness",
    [FORGET, "UPDATE retention_summary SET value = 0 WHERE name = 'version'"],
    ids=["marked-out-of-date", "another-version"],
)
def test_a_summary_out_of_date_is_rebuilt_from_the_records(tmp_path: Path, staleness: str) -> None:
    metadata = Metadata(tmp_path / "metadata")
    metadata.set_manifest(A, ManifestRecord(OCI, 10, (str(B),), 5.0))
    metadata.set_tag("h", "r", "v1", tag(A))
    metadata.set_tag("h", "r", "v1", tag(B))
    metadata.record_pull("h", "r", A, 9.0)
    metadata.close()
    # Rows a writer that bypassed the store left behind, and one it did not write.
    with sqlite3.connect(tmp_path / "metadata" / "cache.db") as db:
        db.execute("DELETE FROM retention_tag")
        db.execute("INSERT INTO retention_pull VALUES ('h', 'gone', ?, 1.0)", (str(C),))
        db.execute(staleness)
    reopened = Metadata(tmp_path / "metadata")
    try:
        rows = summarised(reopened)
        assert rows == from_records(reopened)
        assert rows["tags"] == [("h", "r", "v1", str(B))]
        assert rows["pulls"] == [("h", "r", str(A), 9.0)]
    finally:
        reopened.close()


def test_the_summary_keeps_a_manifests_references_as_json(tmp_path: Path) -> None:
    metadata = Metadata(tmp_path / "metadata")
    try:
        metadata.set_manifest(A, ManifestRecord(OCI, 10, (str(B), "x", str(C)), 5.0))
        with sqlite3.connect(tmp_path / "metadata" / "cache.db") as db:
            ((refs,),) = db.execute("SELECT refs FROM retention_manifest")
        assert json.loads(refs) == [str(B), str(C)]
    finally:
        metadata.close()
