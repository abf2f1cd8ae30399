"""Retention policies name a hosted repository as its users do (``<tenancy>/<repo>``),
never by its ``hosted:`` key; cached repositories stay ``HOST/REPO``."""

from __future__ import annotations

import pytest

from mirror.errors import RegistryError
from mirror.retention.names import policy_name, resolve_policy_repository
from mirror.upstream.routing import Route, Router


def router(default: str | None) -> Router:
    return Router([Route("docker.io", (), True)], default)


def test_hosted_repositories_are_named_as_pushed() -> None:
    assert policy_name("hosted:acme", "team/app") == "acme/team/app"
    assert policy_name("docker.io", "library/alpine") == "docker.io/library/alpine"


def test_a_name_resolves_like_a_pull_unless_it_is_hosted() -> None:
    assert resolve_policy_repository(router("docker.io"), "alpine") == "docker.io/library/alpine"
    hosted = lambda name: name.startswith("acme/")  # noqa: E731
    assert resolve_policy_repository(router("docker.io"), "acme/app", hosted) == "acme/app"
    # No upstream serves it (no default upstream): a hosted <tenancy>/<repo>.
    assert resolve_policy_repository(router(None), "seed/app") == "seed/app"
    with pytest.raises(RegistryError):
        resolve_policy_repository(router(None), "lonely")
    with pytest.raises(RegistryError):
        resolve_policy_repository(router(None), "Seed/BAD")
