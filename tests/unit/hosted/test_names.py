"""The metadata key of a tenancy's hosted repositories."""

from __future__ import annotations

from mirror.hosted.names import hosted_key


def test_hosted_key_is_apart_from_rule_and_upstream_keys() -> None:
    assert hosted_key("acme") == "hosted:acme"
    assert hosted_key("acme") != hosted_key("acme2")


def test_every_upload_route_needs_push_and_use() -> None:
    from mirror.auth.policy.grammar import Verb
    from mirror.web.access import need_of

    for method in ("POST", "PATCH", "PUT", "GET", "DELETE"):
        need = need_of(method, "/v2/{name}/blobs/uploads/{uuid}")
        assert (need.action, need.verb) == ("push", Verb.USE), method
