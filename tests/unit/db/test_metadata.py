"""The metadata store: tags, manifests, last pulls, and what retention asks of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.db.metadata import WRITE_FAILED, ManifestRecord, Metadata, TagRecord
from mirror.oci.digest import Digest
from tests.contract.smalldisk import fill, free, small_disk

OCI = "application/vnd.oci.image.manifest.v1+json"
A = Digest.parse("sha256:" + "a" * 64)
B = Digest.parse("sha256:" + "b" * 64)


@pytest.fixture
def metadata(tmp_path: Path) -> Iterator[Metadata]:
    store = Metadata(tmp_path / "metadata")
    yield store
    store.close()


def tag(digest: Digest, at: float = 100.0) -> TagRecord:
    return TagRecord(str(digest), OCI, 10, at)


def test_last_pulls_are_batched_until_flushed_and_survive_reopening(tmp_path: Path) -> None:
    store = Metadata(tmp_path / "md")
    store.record_pull("docker.io", "library/alpine", A, 5.0)
    assert store.last_pull("docker.io", "library/alpine", A) == 5.0
    assert store.flush() == 1
    assert store.flush() == 0
    store.record_pull("docker.io", "library/alpine", A, 7.0)
    store.close()  # close flushes
    again = Metadata(tmp_path / "md")
    assert again.last_pull("docker.io", "library/alpine", A) == 7.0
    again.close()


@pytest.mark.parametrize("scan", [True, False], ids=["scanning", "with-snapshot-tags"])
def test_evict_image_removes_only_its_tags_its_pull_and_its_history(
    metadata: Metadata, scan: bool
) -> None:
    metadata.set_tag("h", "r", "old", tag(A))
    metadata.set_tag("h", "r", "latest", tag(A))
    metadata.set_tag("h", "r", "latest", tag(B))  # moves: history A -> B
    metadata.set_tag("h", "r", "other", tag(B))
    metadata.record_pull("h", "r", A, 1.0)
    metadata.record_pull("h", "r", B, 2.0)
    removed = metadata.evict_image("h", "r", A, None if scan else ("old", "latest", "other"))
    assert removed == ("old",)
    assert metadata.tag("h", "r", "old") is None
    assert metadata.tag("h", "r", "latest") == tag(B)
    assert metadata.last_pull("h", "r", A) is None
    assert metadata.last_pull("h", "r", B) == 2.0
    assert all(str(A) not in (m.from_digest, m.to_digest) for m in metadata.tag_history("h", "r"))


def test_forget_empty_repositories_keeps_those_with_tags_or_pulls(metadata: Metadata) -> None:
    metadata.set_tag("h", "tagged", "v1", tag(A))
    metadata.add_repository("h", "pulled")
    metadata.record_pull("h", "pulled", A, 1.0)  # pending, not flushed yet
    metadata.add_repository("h", "empty")
    metadata.set_manifest(A, ManifestRecord(OCI, 10, (), 1.0))
    forgotten = metadata.forget_empty_repositories(
        {("h", "tagged"), ("h", "pulled"), ("h", "empty")}
    )
    assert forgotten == {"h/empty"}
    assert sorted(metadata.repositories()) == [("h", "pulled"), ("h", "tagged")]


def test_digests_are_stored_as_their_strings_and_listed_as_digests(tmp_path: Path) -> None:
    store = Metadata(tmp_path / "md")
    store.set_manifest(A, ManifestRecord(OCI, 10, (str(B), "sha256:not-a-digest"), 1.0))
    store.record_pull("h", "r", A, 3.0)
    store.link("h", "r", [A, B])
    store.close()
    again = Metadata(tmp_path / "md")
    try:
        keys = set(again._db)
        assert {
            ("manifest", str(A)),
            ("pull", "h", "r", str(A)),
            ("link", "h", "r", str(B)),
        } <= keys
        assert [digest for digest, _ in again.manifests()] == [A]
        assert again.pulls() == {("h", "r", A): 3.0}
        assert again.linked("h", "r", B)
        record = again.manifest(A)
        assert record is not None
        assert record.referenced() == (B,)  # a malformed reference names nothing cached
    finally:
        again.close()


def test_forgetting_an_upstream_key_drops_its_records_and_keeps_every_other(
    metadata: Metadata,
) -> None:
    from mirror.db.metadata import CachedResponse

    answer = CachedResponse(b"{}", "application/json", (), 1.0)
    for upstream in ("acme/hub@1", "beta/hub@2", "docker.io"):
        metadata.set_tag(upstream, "library/alpine", "3", tag(A))
        metadata.link(upstream, "library/alpine", [A, B])
        metadata.record_pull(upstream, "library/alpine", A, 5.0)
        metadata.set_response("tags", upstream, "library/alpine", "", answer)
    metadata.flush()
    metadata.record_pull("acme/hub@1", "library/alpine", B, 6.0)

    assert metadata.forget_upstream("acme/hub@1") == 7

    assert metadata.tag("acme/hub@1", "library/alpine", "3") is None
    assert not metadata.linked("acme/hub@1", "library/alpine", A)
    assert metadata.tag_history("acme/hub@1", "library/alpine") == ()
    assert metadata.response("tags", "acme/hub@1", "library/alpine", "") is None
    assert all(upstream != "acme/hub@1" for upstream, _, _ in metadata.pulls())
    assert ("acme/hub@1", "library/alpine") not in set(metadata.repositories())
    for kept in ("beta/hub@2", "docker.io"):
        assert metadata.tag(kept, "library/alpine", "3") is not None
        assert metadata.linked(kept, "library/alpine", B)
        assert metadata.response("tags", kept, "library/alpine", "") is not None


def test_a_flush_the_full_disk_refuses_keeps_its_batch_for_the_next_try(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        store = Metadata(disk / "metadata")
        try:
            store.record_pull("h", "r", A, 5.0)
            fill(disk)
            with pytest.raises(WRITE_FAILED) as refused:
                store.flush()
            assert "full" in str(refused.value)
            store.record_pull("h", "r", B, 6.0)  # noted while the disk was full
            assert store.pulls() == {("h", "r", A): 5.0, ("h", "r", B): 6.0}
            assert store.last_pull("h", "r", A) == 5.0

            free(disk)
            assert store.flush() == 2
            assert store.flush() == 0
        finally:
            store.close()
        again = Metadata(disk / "metadata")
        try:
            assert again.pulls() == {("h", "r", A): 5.0, ("h", "r", B): 6.0}
        finally:
            again.close()


def test_a_full_disk_fails_manifest_writes_with_write_failed(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        store = Metadata(disk / "metadata")
        try:
            fill(disk)
            with pytest.raises(WRITE_FAILED):
                store.set_manifest(A, ManifestRecord(OCI, 10, (), 1.0))
            assert store.manifest(A) is None
        finally:
            store.close()


def test_close_on_a_full_disk_still_closes_and_says_what_it_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        store = Metadata(disk / "metadata")
        store.record_pull("h", "r", A, 5.0)
        fill(disk)
        store.close()
        assert "could not keep 1 last-pull times at close" in caplog.text
