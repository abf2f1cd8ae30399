"""A target's URLs carry ``?ns=`` (node-local mirrors route by it), upload Locations
included; token scopes follow the repository and the method."""

from __future__ import annotations

from yarl import URL

from mirror.bench.target import Target, scope_of


def test_every_address_carries_ns_once() -> None:
    target = Target("m", "http://127.0.0.1:5000/", ns="docker.io")
    assert target.address("/v2/library/alpine/manifests/3") == (
        "http://127.0.0.1:5000/v2/library/alpine/manifests/3?ns=docker.io"
    )
    location = "/v2/a/blobs/uploads/u1?_state=x"
    assert target.address(location) == (
        "http://127.0.0.1:5000/v2/a/blobs/uploads/u1?_state=x&ns=docker.io"
    )
    absolute = "http://127.0.0.1:5000/v2/a/blobs/uploads/u1?ns=docker.io"
    assert target.address(absolute) == absolute
    assert Target("r", "http://r:1").address("/v2/a/blobs/x") == "http://r:1/v2/a/blobs/x"


def test_scope_is_pull_for_reads_and_pull_push_for_writes() -> None:
    url = URL("http://r/v2/team/app/blobs/uploads/")
    assert scope_of("POST", url) == "repository:team/app:pull,push"
    assert scope_of("HEAD", URL("http://r/v2/team/app/manifests/v1")) == (
        "repository:team/app:pull"
    )
