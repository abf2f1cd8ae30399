"""Which links of a hosted repository are garbage: roots are tagged manifests and manifests
pushed on their own; children and referrers of a deleted manifest are not."""

from __future__ import annotations

import pytest

from mirror.config import load_config
from mirror.config.model import ConfigError
from mirror.oci.digest import Digest
from mirror.retention.hosted_gc import HostedRepository, garbage


def d(name: str) -> Digest:
    return Digest.of(name.encode())


# index -> child -> (config, layer); signature has the index as subject; alone is untagged.
EDGES = {
    d("index"): [d("child"), d("signature")],
    d("child"): [d("config"), d("layer")],
    d("signature"): [d("empty")],
    d("alone"): [d("alone-layer")],
}
MANIFESTS = set(EDGES)
LINKS = frozenset({*EDGES, d("config"), d("layer"), d("empty"), d("alone-layer"), d("upload")})


def repo(
    links: frozenset[Digest], tagged: set[Digest], deleted: dict[Digest, float]
) -> HostedRepository:
    return HostedRepository("hosted:acme", "app", links, frozenset(map(str, tagged)), deleted)


def edges(digest: Digest) -> list[Digest]:
    return EDGES.get(digest, [])


def test_only_uploads_without_a_manifest_are_garbage_while_everything_is_present() -> None:
    found = garbage(repo(LINKS, {d("index")}, {}), edges, MANIFESTS.__contains__)
    assert found.unreferenced == {d("upload")}


def test_a_deleted_index_leaves_its_untagged_children_and_referrers() -> None:
    links = LINKS - {d("index")}
    found = garbage(repo(links, set(), {d("index"): 5.0}), edges, MANIFESTS.__contains__)
    left = {d("child"), d("config"), d("layer"), d("signature"), d("empty")}
    assert found.unreferenced == left | {d("upload")}
    assert found.left_by[d("index")] == left
    assert found.unreferenced_since(d("layer"), {d("index"): 5.0}) == 5.0
    assert found.unreferenced_since(d("upload"), {d("index"): 5.0}) is None


def test_a_tagged_child_outlives_its_deleted_index() -> None:
    links = LINKS - {d("index")}
    found = garbage(repo(links, {d("child")}, {d("index"): 5.0}), edges, MANIFESTS.__contains__)
    assert found.unreferenced == {d("signature"), d("empty"), d("upload")}


def test_a_digest_pushed_again_after_its_delete_is_present() -> None:
    found = garbage(repo(LINKS, set(), {d("index"): 5.0}), edges, MANIFESTS.__contains__)
    assert found.unreferenced == {d("upload")}


@pytest.mark.parametrize("value", [-1.0, float("inf")])
def test_gc_grace_is_checked_at_start(value: float) -> None:
    with pytest.raises(ConfigError, match=r"hosted\.gc_grace"):
        load_config(overrides={"hosted": {"gc_grace": value}}, environ={})
