"""Hosted names and keys on the registry face, the catalog, and the access writes need."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.auth.access import Resolver
from mirror.auth.policy.grammar import Verb
from mirror.auth.scope import PULL, PUSH
from mirror.db.identity.records import PullThroughRule
from mirror.db.identity.store import IdentityStore
from mirror.hosted.names import hosted_key
from mirror.hosted.repositories import hosted_target, is_hosted
from mirror.upstream.routing import Route, Router
from mirror.web.access import need_of


@pytest.fixture
def resolver(tmp_path: Path) -> Iterator[Resolver]:
    store = IdentityStore(tmp_path)
    store.create_tenancy("acme", 0)
    store.create_tenancy("nodes", 0)
    store.create_rule(PullThroughRule("acme", "hub", "https://registry.example"))
    router = Router([Route("docker.io", library_prefix=True)], "docker.io")
    yield Resolver(store, router, "nodes", registry_hosts=("registry.example",))
    store.close()


@pytest.mark.parametrize(
    ("path", "hosted"),
    [
        ("acme/app", True),
        ("acme/team/app", True),
        ("acme/hub/library/alpine", False),  # under a rule's prefix: a cache
        ("acme/hub", False),  # the prefix itself is no hosted name either
        ("acme/hubble", True),
    ],
)
def test_hosted_names(resolver: Resolver, path: str, hosted: bool) -> None:
    ref = resolver.locate(path, None, "registry.example")
    assert resolver.is_hosted(ref) is hosted


def test_node_local_names_are_never_hosted(resolver: Resolver) -> None:
    ref = resolver.locate("acme/app", None, "node.local")
    assert ref.proxy and not resolver.is_hosted(ref)


def test_catalog_paths_of_hosted_repositories(resolver: Resolver) -> None:
    assert resolver.catalog_path("hosted:acme/app", "registry.example") == "acme/app"
    assert resolver.catalog_path("hosted:acme/app", "node.local") is None
    assert resolver.catalog_path("hosted:gone/app", "registry.example") is None


def test_hosted_targets() -> None:
    target = hosted_target("acme", "team/app", "acme/team/app")
    assert (target.upstream, target.repo, target.name) == (
        "hosted:acme",
        "team/app",
        "acme/team/app",
    )
    assert is_hosted(target)


@pytest.mark.parametrize(
    ("method", "route", "action", "verb"),
    [
        ("GET", "/v2/{name}/manifests/{reference}", PULL, Verb.READ),
        ("GET", "/v2/{name}/tags/list", PULL, Verb.INSPECT),
        ("PUT", "/v2/{name}/manifests/{reference}", PUSH, Verb.USE),
        ("DELETE", "/v2/{name}/manifests/{reference}", PUSH, Verb.USE),
        ("DELETE", "/v2/{name}/blobs/{digest}", PUSH, Verb.USE),
        ("POST", "/v2/{name}/blobs/uploads/{rest}", PUSH, Verb.USE),
    ],
)
def test_need_of(method: str, route: str, action: str, verb: Verb) -> None:
    need = need_of(method, route)
    assert (need.action, need.verb) == (action, verb)


def test_hosted_key_is_apart_from_rule_and_upstream_keys() -> None:
    assert hosted_key("acme") == "hosted:acme"
    assert hosted_key("acme") != hosted_key("acme2")


def test_every_upload_route_needs_push_and_use() -> None:
    for method in ("POST", "PATCH", "PUT", "GET", "DELETE"):
        need = need_of(method, "/v2/{name}/blobs/uploads/{uuid}")
        assert (need.action, need.verb) == ("push", Verb.USE), method
