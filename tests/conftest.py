"""Shared fixtures: real peers (``docker-registry``, ``containerd``) and image builders.

Peers are skipped, with the reason, only when their binary is missing from this machine.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers.containerd import Containerd
from tests.peers.factory import ImageFactory
from tests.peers.postgres import postgres_dsn, postgres_server
from tests.peers.registry import Registry

# Session PostgreSQL and a fresh database per test (tests/peers/postgres.py).
__all__ = ["postgres_dsn", "postgres_server"]


def _require(*binaries: str) -> None:
    missing = [name for name in binaries if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (apt-get install {' '.join(missing)})")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A ``random.Random`` seeded from the test's id: reproducible, distinct per test."""
    return random.Random(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="module")
def upstream_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real ``docker-registry`` shared by the tests of one module (starts in ~50 ms)."""
    _require("docker-registry", "skopeo")
    with Registry(tmp_path_factory.mktemp("upstream-registry")) as registry:
        yield registry


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """Start extra registries (e.g. a ``proxy_remote_url`` pull-through peer, or one with
    ``htpasswd`` auth); all are stopped when the test ends."""
    _require("docker-registry")
    started: list[Registry] = []

    def start(
        *,
        proxy_remote_url: str | None = None,
        htpasswd: Path | None = None,
        proxy_username: str | None = None,
        proxy_password: str | None = None,
    ) -> Registry:
        registry = Registry(
            tmp_path / f"registry-{len(started)}",
            proxy_remote_url=proxy_remote_url,
            htpasswd=htpasswd,
            proxy_username=proxy_username,
            proxy_password=proxy_password,
        )
        registry.start_sync()
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop_sync()


@pytest.fixture
def image_factory(
    upstream_registry: Registry,
    tmp_path: Path,
    rng: random.Random,
    request: pytest.FixtureRequest,
) -> ImageFactory:
    """Build and push images to ``upstream_registry``; see :class:`ImageFactory`."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60] or "test"
    return ImageFactory(upstream_registry, tmp_path / "layout", rng, f"test/{name}")


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    """A private ``containerd`` (no CRI plugin) with namespace ``test``."""
    _require("containerd", "ctr")
    if os.geteuid() != 0:
        pytest.skip("containerd needs root")
    with Containerd(tmp_path / "containerd") as daemon:
        yield daemon


@pytest.fixture
def hosts_dir(tmp_path: Path) -> Path:
    """An empty containerd hosts directory (fill it with ``write_hosts_toml``)."""
    path = tmp_path / "hosts.d"
    path.mkdir()
    return path
