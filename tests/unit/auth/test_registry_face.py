"""The host clients pull tenancy repositories by, as the console's pull command shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.auth.access import Resolver
from mirror.db.identity.store import IdentityStore
from mirror.upstream.routing import Route, Router


@pytest.mark.parametrize(
    ("registry_hosts", "asked", "shown"),
    [
        pytest.param(
            ("registry.example",), "registry.example:5000", "registry.example:5000", id="on-face"
        ),
        pytest.param(
            ("registry.example",), "127.0.0.1:5000", "registry.example:5000", id="node-face"
        ),
        pytest.param(("registry.example",), "10.0.0.1", "registry.example", id="no-port"),
        pytest.param((), "127.0.0.1:5000", "127.0.0.1:5000", id="no-registry-hosts"),
    ],
)
def test_the_pull_host_is_the_registry_face(
    tmp_path: Path, registry_hosts: tuple[str, ...], asked: str, shown: str
) -> None:
    store = IdentityStore(tmp_path)
    try:
        router = Router([Route("docker.io", library_prefix=True)], "docker.io")
        resolver = Resolver(store, router, "nodes", registry_hosts=registry_hosts)
        assert resolver.registry_face(asked) == shown
    finally:
        store.close()
