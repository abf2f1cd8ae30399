"""The retention benchmark's bulk fixture writer stores what a mirror would: every key in the
bytes diskcache itself stores (so lookups by key find it), every record read back equal, and
the store still counts its rows and accepts the mirror's own writes afterwards."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import diskcache

from benchmarks.bulk_metadata import BulkMetadata, Template, key_bytes, pickled
from benchmarks.scenarios.retention import OCI, UPSTREAM, populate
from mirror.db.metadata import ManifestRecord, Metadata, TagMove, TagRecord
from mirror.oci.digest import Digest

A, B, C = ("sha256:" + ch * 64 for ch in "abc")


def test_key_bytes_are_diskcaches_own_for_every_tuple_length(tmp_path: Path) -> None:
    disk = diskcache.Disk(str(tmp_path), pickle_protocol=5)
    for key in [("a",), ("repo", "docker.io"), ("manifest", A), ("tag", UPSTREAM, "x/y", "v1")]:
        assert key_bytes(key) == bytes(disk.put(key)[0])


def test_a_template_fills_to_the_records_own_pickle() -> None:
    template = Template(pickled(ManifestRecord(OCI, 900, (A, B), 5.0)), (A, B))
    assert template.fill(C, A) == pickled(ManifestRecord(OCI, 900, (C, A), 5.0))


def test_the_bulk_store_reads_as_the_mirror_wrote_it(tmp_path: Path) -> None:
    populate(tmp_path, 30, 1_000_000.0)
    metadata = Metadata(tmp_path / "metadata")
    try:
        tags = list(metadata.tags())
        assert len(tags) == 30 and len(dict(metadata.manifests())) == 30
        assert len(metadata.pulls()) == 30
        upstream, repo, tag, record = tags[0]
        digest = Digest.parse(record.digest)
        assert metadata.tag(upstream, repo, tag) == record
        assert record == TagRecord(record.digest, OCI, 900, 1_000_000.0)
        manifest = metadata.manifest(digest)
        assert manifest is not None and manifest.cached_at == 1_000_000.0 - 86400
        assert metadata.last_pull(upstream, repo, digest) is not None
        history = metadata.tag_history(upstream, repo)
        assert TagMove(tag, None, record.digest, 1_000_000.0) in history
        assert (upstream, repo) in set(metadata.repositories())
        # The mirror's own writes replace bulk rows by key (the unique index is back).
        metadata.set_tag(upstream, repo, tag, TagRecord(C, OCI, 1, 2.0))
        assert metadata.tag(upstream, repo, tag) == TagRecord(C, OCI, 1, 2.0)
    finally:
        metadata.close()
    with sqlite3.connect(tmp_path / "metadata" / "cache.db") as db:
        ((count,),) = db.execute("SELECT value FROM Settings WHERE key = 'count'")
        ((rows,),) = db.execute("SELECT COUNT(*) FROM Cache")
        ((mode,),) = db.execute("PRAGMA journal_mode")
    assert count == rows and mode == "wal"


def test_an_empty_bulk_write_leaves_a_valid_store(tmp_path: Path) -> None:
    BulkMetadata(tmp_path / "m").close()
    metadata = Metadata(tmp_path / "m")
    assert list(metadata.tags()) == []
    metadata.close()
