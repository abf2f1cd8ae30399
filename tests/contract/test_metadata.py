"""One contract every metadata store keeps (the roles of mirror/db/roles.py): the embedded
diskcache store of a single node and the PostgreSQL store shared by a regional tier answer
these the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirror.db.metadata import CachedResponse, ManifestRecord, Metadata, TagMove, TagRecord
from mirror.db.postgres.connect import PostgresSettings
from mirror.db.postgres.metadata import PostgresMetadata
from mirror.db.roles import MetadataStore
from mirror.oci.digest import Digest

OCI = "application/vnd.oci.image.manifest.v1+json"
A = Digest.parse("sha256:" + "a" * 64)
B = Digest.parse("sha256:" + "b" * 64)
C = Digest.parse("sha256:" + "c" * 64)

Opener = Callable[[], MetadataStore]


@pytest.fixture(params=["diskcache", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens (and reopens) one store of the backend under test; all are closed at the end."""
    opened: list[MetadataStore] = []
    if request.param == "diskcache":

        def make() -> MetadataStore:
            return Metadata(tmp_path / "metadata")
    else:
        settings = PostgresSettings(request.getfixturevalue("postgres_dsn"))

        def make() -> MetadataStore:
            return PostgresMetadata.open(settings, tmp_path)

    def opener() -> MetadataStore:
        store = make()
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Opener) -> MetadataStore:
    return open_store()


def tag(digest: Digest, at: float = 100.0) -> TagRecord:
    return TagRecord(str(digest), OCI, 10, at)


def test_a_tag_reads_back_moves_and_is_touched(store: MetadataStore) -> None:
    assert store.tag("h", "r", "v1") is None
    store.set_tag("h", "r", "v1", tag(A))
    assert store.tag("h", "r", "v1") == tag(A)
    store.touch_tag("h", "r", "v1", 250.0)
    assert store.tag("h", "r", "v1") == tag(A, 250.0)
    store.set_tag("h", "r", "v1", tag(B, 300.0))
    assert store.tag("h", "r", "v1") == tag(B, 300.0)
    store.touch_tag("h", "r", "missing", 1.0)  # touching an unknown tag creates nothing
    assert store.tag("h", "r", "missing") is None
    assert sorted(store.tags()) == [("h", "r", "v1", tag(B, 300.0))]


def test_setting_a_tag_catalogs_its_repository_once(store: MetadataStore) -> None:
    store.set_tag("h", "r", "v1", tag(A))
    store.set_tag("h", "r", "v2", tag(A))
    store.add_repository("h", "r")
    store.add_repository("h", "other")
    assert sorted(store.repositories()) == [("h", "other"), ("h", "r")]


def test_tag_history_records_each_move_oldest_first(store: MetadataStore) -> None:
    store.set_tag("h", "r", "latest", tag(A, 1.0))
    store.set_tag("h", "r", "latest", tag(A, 2.0))  # same digest: no move
    store.set_tag("h", "r", "latest", tag(B, 3.0))
    assert store.delete_tag("h", "r", "latest", 4.0) == tag(B, 3.0)
    assert store.delete_tag("h", "r", "latest", 5.0) is None
    assert store.tag_history("h", "r") == (
        TagMove("latest", None, str(A), 1.0),
        TagMove("latest", str(A), str(B), 3.0),
        TagMove("latest", str(B), None, 4.0),
    )
    assert store.tag_history("h", "never") == ()


def test_manifests_read_back_list_and_are_deleted(store: MetadataStore) -> None:
    record = ManifestRecord(OCI, 42, (str(B), "sha256:not-a-digest"), 7.0)
    assert store.manifest(A) is None
    store.set_manifest(A, record)
    assert store.manifest(A) == record
    assert store.manifest(A).referenced() == (B,)  # type: ignore[union-attr]
    assert list(store.manifests()) == [(A, record)]
    store.delete_manifest(A)
    store.delete_manifest(A)  # deleting what is gone is fine
    assert store.manifest(A) is None
    assert list(store.manifests()) == []


def test_links_are_proven_per_repository(store: MetadataStore) -> None:
    store.link("acme/hub@1", "app", [A, B])
    store.link("acme/hub@1", "app", [A])  # again: nothing new
    store.link("acme/hub@2", "app", [C])
    store.link("beta/hub@1", "app", [A])
    assert store.linked("acme/hub@1", "app", A)
    assert not store.linked("acme/hub@1", "other", A)
    assert not store.linked("acme/hub@2", "app", A)
    assert set(store.links_under("acme/")) == {
        ("acme/hub@1", "app", A),
        ("acme/hub@1", "app", B),
        ("acme/hub@2", "app", C),
    }
    assert store.drop_link("acme/hub@1", "app", B)
    assert not store.drop_link("acme/hub@1", "app", B)
    assert store.unlink("acme/hub@1", "app") == 1
    assert not store.linked("acme/hub@1", "app", A)
    assert store.linked("beta/hub@1", "app", A)


def test_cached_responses_keep_body_type_and_headers(store: MetadataStore) -> None:
    first = CachedResponse(b"\x00{}\xff", "application/json", (("Link", "<x>"), ("A", "b")), 1.0)
    second = CachedResponse(b"[]", "application/json", (), 2.0)
    assert store.response("tags", "h", "r", "") is None
    store.set_response("tags", "h", "r", "", first)
    store.set_response("referrers", "h", "r", str(A), second)
    assert store.response("tags", "h", "r", "") == first
    store.set_response("tags", "h", "r", "", second)
    assert store.response("tags", "h", "r", "") == second
    assert store.response("referrers", "h", "r", str(A)) == second


def test_last_pulls_are_batched_until_flushed_and_survive_reopening(open_store: Opener) -> None:
    store = open_store()
    store.record_pull("h", "r", A, 5.0)
    assert store.last_pull("h", "r", A) == 5.0
    assert store.pulls() == {("h", "r", A): 5.0}
    assert store.flush() == 1
    assert store.flush() == 0
    store.record_pull("h", "r", A, 7.0)
    store.close()  # close flushes
    again = open_store()
    assert again.last_pull("h", "r", A) == 7.0
    assert again.last_pull("h", "r", B) is None
    assert again.pulls() == {("h", "r", A): 7.0}


def test_every_record_survives_reopening(open_store: Opener) -> None:
    store = open_store()
    store.set_tag("h", "r", "v1", tag(A))
    store.set_manifest(A, ManifestRecord(OCI, 1, (), 1.0))
    store.link("h", "r", [A])
    store.set_response("tags", "h", "r", "", CachedResponse(b"x", "text/plain", (), 1.0))
    store.close()
    again = open_store()
    assert again.tag("h", "r", "v1") == tag(A)
    assert again.manifest(A) == ManifestRecord(OCI, 1, (), 1.0)
    assert again.linked("h", "r", A)
    assert again.response("tags", "h", "r", "") is not None
    assert list(again.repositories()) == [("h", "r")]


@pytest.mark.parametrize("scan", [True, False], ids=["scanning", "with-snapshot-tags"])
def test_evict_image_removes_only_its_tags_its_pull_and_its_history(
    store: MetadataStore, scan: bool
) -> None:
    store.set_tag("h", "r", "old", tag(A))
    store.set_tag("h", "r", "latest", tag(A))
    store.set_tag("h", "r", "latest", tag(B))
    store.set_tag("h", "r", "other", tag(B))
    store.record_pull("h", "r", A, 1.0)
    store.record_pull("h", "r", B, 2.0)
    store.flush()
    removed = store.evict_image("h", "r", A, None if scan else ("old", "latest", "other"))
    assert removed == ("old",)
    assert store.tag("h", "r", "old") is None
    assert store.tag("h", "r", "latest") == tag(B)
    assert store.last_pull("h", "r", A) is None
    assert store.last_pull("h", "r", B) == 2.0
    assert store.tag_history("h", "r") == (TagMove("other", None, str(B), 100.0),)


@pytest.mark.parametrize("scan", [True, False], ids=["scanning", "with-snapshot-tags"])
def test_evicting_images_and_pruning_their_history_once_is_evicting_them_one_by_one(
    store: MetadataStore, scan: bool
) -> None:
    for name, target in (("old", A), ("latest", A), ("latest", B), ("other", B), ("c", C)):
        store.set_tag("h", "r", name, tag(target))
    store.set_tag("h", "q", "old", tag(A))
    for digest, at in ((A, 1.0), (B, 2.0), (C, 3.0)):
        store.record_pull("h", "r", digest, at)
    store.flush()
    store.record_pull("h", "r", B, 4.0)  # batched, not flushed
    names = None if scan else ("old", "latest", "other", "c")
    assert store.evict_image("h", "r", A, names, history=False) == ("old",)
    assert store.evict_image("h", "r", B, names, history=False) == ("latest", "other")
    assert len(store.tag_history("h", "r")) == 5  # left for the pruning
    store.prune_history("h", "r", (A, B))
    assert [store.tag("h", "r", n) for n in ("old", "latest", "other")] == [None] * 3
    assert store.tag("h", "r", "c") == tag(C) and store.tag("h", "q", "old") == tag(A)
    assert store.last_pull("h", "r", A) is None and store.last_pull("h", "r", B) is None
    assert store.last_pull("h", "r", C) == 3.0
    assert store.tag_history("h", "r") == (TagMove("c", None, str(C), 100.0),)
    assert store.tag_history("h", "q") == (TagMove("old", None, str(A), 100.0),)


def test_forget_empty_repositories_keeps_those_with_tags_or_pulls(store: MetadataStore) -> None:
    answer = CachedResponse(b"{}", "application/json", (), 1.0)
    store.set_tag("h", "tagged", "v1", tag(A))
    store.add_repository("h", "pulled")
    store.record_pull("h", "pulled", A, 1.0)  # pending, not flushed yet
    store.add_repository("h", "flushed")
    store.record_pull("h", "flushed", A, 1.0)
    store.flush()
    store.add_repository("h", "empty")
    store.set_response("tags", "h", "empty", "", answer)
    forgotten = store.forget_empty_repositories(
        {("h", "tagged"), ("h", "pulled"), ("h", "flushed"), ("h", "empty")}
    )
    assert forgotten == {"h/empty"}
    assert sorted(store.repositories()) == [("h", "flushed"), ("h", "pulled"), ("h", "tagged")]
    assert store.response("tags", "h", "empty", "") is None


def test_forgetting_an_upstream_key_drops_its_records_and_keeps_every_other(
    store: MetadataStore,
) -> None:
    answer = CachedResponse(b"{}", "application/json", (), 1.0)
    for upstream in ("acme/hub@1", "beta/hub@2", "docker.io"):
        store.set_tag(upstream, "library/alpine", "3", tag(A))
        store.link(upstream, "library/alpine", [A, B])
        store.record_pull(upstream, "library/alpine", A, 5.0)
        store.set_response("tags", upstream, "library/alpine", "", answer)
    store.flush()
    store.record_pull("acme/hub@1", "library/alpine", B, 6.0)

    # repo, two links, tag, tag history, last pull, response (the pending pull is dropped)
    assert store.forget_upstream("acme/hub@1") == 7

    assert store.tag("acme/hub@1", "library/alpine", "3") is None
    assert not store.linked("acme/hub@1", "library/alpine", A)
    assert store.tag_history("acme/hub@1", "library/alpine") == ()
    assert store.response("tags", "acme/hub@1", "library/alpine", "") is None
    assert all(upstream != "acme/hub@1" for upstream, _, _ in store.pulls())
    assert ("acme/hub@1", "library/alpine") not in set(store.repositories())
    for kept in ("beta/hub@2", "docker.io"):
        assert store.tag(kept, "library/alpine", "3") == tag(A)
        assert store.linked(kept, "library/alpine", B)
        assert store.last_pull(kept, "library/alpine", A) == 5.0


def test_deletion_notes_and_repository_records_of_hosted_repositories(
    store: MetadataStore,
) -> None:
    store.link("hosted:acme", "app", [A, B])
    store.set_tag("hosted:acme", "app", "v1", tag(A))
    store.link("hosted:other", "app", [C])
    store.link("h", "cached", [C])
    store.bury("hosted:acme", "app", B, 50.0)
    store.bury("hosted:acme", "app", B, 60.0)

    found = store.repository_records("hosted:acme")
    assert found.links == {("hosted:acme", "app"): {A, B}}
    assert found.tags == {("hosted:acme", "app"): {str(A)}}
    assert found.deleted == {("hosted:acme", "app"): {B: 60.0}}
    assert set(store.repository_records("hosted:").links) == {
        ("hosted:acme", "app"),
        ("hosted:other", "app"),
    }

    store.unbury("hosted:acme", "app", B)
    assert store.repository_records("hosted:acme").deleted == {}
    store.bury("hosted:acme", "app", A, 70.0)
    store.forget_upstream("hosted:acme")
    assert store.repository_records("hosted:acme").deleted == {}
    assert store.repository_records("hosted:acme").links == {}


def test_a_snapshot_reads_manifests_tags_and_pulls_keyed_alike(store: MetadataStore) -> None:
    record = ManifestRecord(OCI, 10, (str(B),), 5.0)
    store.set_manifest(A, record)
    store.set_tag("h", "r", "v1", tag(A))
    store.record_pull("h", "r", A, 42.0)
    assert store.pending_pulls() == {("h", "r", str(A)): 42.0}
    before_flush = dict(store.records(("manifest", "tag", "pull")))
    assert before_flush == {("manifest", str(A)): record, ("tag", "h", "r", "v1"): tag(A)}

    store.flush()
    assert store.pending_pulls() == {}
    assert dict(store.records(("pull",))) == {("pull", "h", "r", str(A)): 42.0}


def test_snapshot_rows_are_every_record_retention_judges_by_as_plain_rows(
    store: MetadataStore,
) -> None:
    store.set_manifest(A, ManifestRecord(OCI, 10, (str(B),), 5.0))
    store.set_tag("h", "r", "v1", tag(A, 1.0))
    store.set_tag("h", "r", "v1", tag(B, 2.0))  # moves away from A
    store.set_tag("h", "r", "v2", tag(A, 3.0))
    store.delete_tag("h", "r", "v2", 4.0)  # removed from A
    store.record_pull("h", "r", A, 42.0)
    store.flush()
    store.record_pull("h", "r", B, 43.0)  # pending: not part of the rows
    manifests, tags, pulls, untagged = [], [], [], []
    for rows in store.snapshot_rows():
        manifests += rows.manifests
        tags += rows.tags
        pulls += rows.pulls
        untagged += rows.untagged
    assert manifests == [(str(A), OCI, 10, 5.0, (str(B),))]
    assert tags == [("h", "r", "v1", str(B))]
    assert pulls == [("h", "r", str(A), 42.0)]
    assert untagged == [("h", "r", str(A), 2.0), ("h", "r", str(A), 4.0)]
