"""Retention's snapshot reads what the metadata says at the time of the pass: a last pull not
flushed yet wins over the stored one, malformed records are left out, and report lines are
laid out exactly as ``json.dumps(indent=2)`` lays them out inside the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mirror.db.metadata import ManifestRecord, Metadata, TagRecord
from mirror.oci.digest import Digest
from mirror.retention.lines import Line, line_dict
from mirror.retention.report import line_json, line_text
from mirror.retention.snapshot import Snapshot

OCI = "application/vnd.oci.image.manifest.v1+json"
IMAGE = Digest.parse("sha256:" + "a" * 64)
CHILD = Digest.parse("sha256:" + "b" * 64)


def test_a_pending_pull_replaces_the_stored_one(tmp_path: Path) -> None:
    metadata = Metadata(tmp_path / "metadata")
    try:
        metadata.set_manifest(IMAGE, ManifestRecord(OCI, 10, (str(CHILD), "not-a-digest"), 1.0))
        metadata.set_manifest(CHILD, ManifestRecord(OCI, 5, (), 1.0))
        metadata.set_tag("docker.io", "a/b", "v1", TagRecord(str(IMAGE), OCI, 10, 1.0))
        metadata.set_tag("docker.io", "a/b", "bad", TagRecord("sha256:nope", OCI, 10, 1.0))
        metadata.record_pull("docker.io", "a/b", IMAGE, 100.0)
        metadata.flush()
        metadata.record_pull("docker.io", "a/b", IMAGE, 200.0)
        snapshot = Snapshot(metadata, tmp_path)
        try:
            assert list(snapshot.repositories()) == [("docker.io", "a/b")]
            assert snapshot.pulls("docker.io", "a/b") == {str(IMAGE): 200.0}
            assert snapshot.tags("docker.io", "a/b") == {str(IMAGE): ["v1"]}
            found = snapshot.manifests([str(IMAGE), str(CHILD), "sha256:" + "c" * 64])
            assert found[str(IMAGE)].references == (str(CHILD),)
            assert set(found) == {str(IMAGE), str(CHILD)}
        finally:
            snapshot.close()
    finally:
        metadata.close()


def test_a_line_is_laid_out_as_json_indents_it_inside_the_report() -> None:
    lines: list[dict[str, Any]] = [
        {"a": 'x\u00e9"', "b": [], "c": ["t1", "t2"], "d": None, "e": 5, "f": 1.5, "g": True},
        {"nested": {"x": [1]}, "mixed": [1, "a"]},
        {},
    ]
    for line in lines:
        assert line_json(line) == json.dumps(line, indent=2).replace("\n", "\n    ")


KEEP = ("keep", "retains-all", 'say "why"', None)
WHY = ("last pulled 3.0 days ago", "2027-01-01T00:00:00Z")


def test_a_line_tuple_is_laid_out_as_its_json_object() -> None:
    digest = "sha256:" + "a" * 64
    at = "2026-01-01T00:00:00Z"
    lines: list[Line] = [
        (*("docker.io/a/b", digest, OCI, 10, ["v1", "v\u00e9"], at, None, None, "global"), *KEEP),
        (*("hosted/x", digest, OCI, 0, [], None, None, at, "stale", "delete", "not-pulled"), *WHY),
    ]
    for line in lines:
        assert line_text(line) == line_json(line_dict(line))
