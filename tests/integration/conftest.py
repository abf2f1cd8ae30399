"""The mirror under test, in-process on a real 127.0.0.1 port, in front of a real upstream."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.app.build import build_app
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.clock import ManualClock
from mirror.config import Config, load_config
from mirror.db.identity.store import IdentityStore
from mirror.metrics import Metrics
from mirror.retention.service import RetentionService
from mirror.web.keys import AUTH, RETENTION, SERVICES, Services
from tests.peers.cri import CriContainerd
from tests.peers.dockerd import Dockerd
from tests.peers.podman import Podman
from tests.peers.registry import Registry


@dataclass
class Mirror:
    """A running mirror: where it listens, its clock and metrics, and its data directory."""

    server: TestServer
    config: Config
    clock: ManualClock
    metrics: Metrics
    data_dir: Path
    app: web.Application = field(repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def url(self) -> str:
        return f"{self.server.scheme}://{self.host}"

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    @property
    def retention(self) -> RetentionService:
        return self.app[RETENTION]

    def metric(self, name: str, **labels: str) -> float:
        """The current value of a metric sample (0 when it was never touched)."""
        value = self.metrics.registry.get_sample_value(name, labels or None)
        return value or 0.0

    def cached_blob_files(self) -> list[Path]:
        return [p for p in (self.data_dir / "blobs").rglob("*") if p.is_file()]


MirrorFactory = Callable[..., Awaitable[Mirror]]


@pytest.fixture
async def mirror_factory(aiohttp_server: Any, tmp_path: Path) -> MirrorFactory:
    """Start mirrors in front of given upstreams (``{host: url}``), default = the first."""
    count = 0

    async def start(
        upstreams: dict[str, str],
        *,
        data_dir: Path | None = None,
        encryption: dict[str, Any] | None = None,
        server: dict[str, Any] | None = None,
        ssl: SSLContext | None = None,
        retention: dict[str, Any] | None = None,
        store_factory: Callable[[Path], FilesystemBlobStore] | None = None,
        upstream_options: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        **cache: Any,
    ) -> Mirror:
        nonlocal count
        count += 1
        data_dir = data_dir or tmp_path / f"mirror-{count}"
        config = load_config(
            overrides={
                "server": server or {},
                "storage": {"data_dir": str(data_dir), "chunk_size": 64 * 1024},
                # The key file lives beside the data directory, never inside it.
                "encryption": {"kek_file": str(data_dir.with_name(data_dir.name + ".kek"))}
                | (encryption or {}),
                "cache": cache,
                "upstreams": [
                    {"host": h, "url": u, **(upstream_options or {})} for h, u in upstreams.items()
                ],
                "default_upstream": next(iter(upstreams)),
                "retention": retention or {},
                "metadata": metadata or {},
            },
            environ={},
        )
        clock = ManualClock()
        metrics = Metrics()
        app = build_app(config, clock=clock, metrics=metrics, store_factory=store_factory)
        test_server = await aiohttp_server(app, host="127.0.0.1", ssl=ssl)
        return Mirror(test_server, config, clock, metrics, data_dir, app)

    return start


@pytest.fixture
async def mirror(mirror_factory: MirrorFactory, upstream_registry: Registry) -> Mirror:
    """A mirror whose default (and only) upstream is the module's real ``docker-registry``."""
    return await mirror_factory({upstream_registry.host: upstream_registry.url})


# The registry face of auth test mirrors (``auth.registry_hosts``): tenancy repositories are
# addressed at localhost:<port>, the node-local face at 127.0.0.1:<port>.
AUTH_REGISTRY_HOST = "localhost"


@dataclass
class AuthMirror:
    """A mirror with auth enabled: its first administrator's token and the identity store.
    ``url``/``host`` are its registry face (tenancy repositories), ``node_url``/``node_host``
    its node-local face (proxy repositories of the default tenancy)."""

    mirror: Mirror
    admin_token: str
    announcements: list[str]

    @property
    def url(self) -> str:
        return f"{self.mirror.server.scheme}://{self.host}"

    @property
    def host(self) -> str:
        return f"{AUTH_REGISTRY_HOST}:{self.mirror.server.port}"

    @property
    def node_url(self) -> str:
        return self.mirror.url

    @property
    def node_host(self) -> str:
        return self.mirror.host

    @property
    def identity(self) -> IdentityStore:
        return self.mirror.app[AUTH].identity

    def user(
        self, tenancy: str, name: str, *groups: str, policy: list[str] | None = None
    ) -> tuple[str, str]:
        """Create (tenancy if needed,) groups, a user in them, a policy; return its login."""
        now = self.mirror.clock.now()
        store = self.identity
        if store.tenancy(tenancy) is None:
            store.create_tenancy(tenancy, now)
        store.create_user(tenancy, name, now)
        for group in groups:
            if store.group(tenancy, group) is None:
                store.create_group(tenancy, group)
            store.set_member(tenancy, group, name, True)
        if policy:
            store.set_policy(tenancy, f"{name}-policy", tuple(policy))
        _, token = store.create_token(tenancy, name, "test", now, cost=AUTH_TEST_HASH_COST)
        return f"{tenancy}/{name}", token


AUTH_TEST_HASH_COST = 2**8
AuthMirrorFactory = Callable[..., Awaitable[AuthMirror]]


@pytest.fixture
async def auth_mirror_factory(aiohttp_server: Any, tmp_path: Path) -> AuthMirrorFactory:
    """Start mirrors with ``[auth] enabled`` (fast token hashes, default tenancy ``nodes``)."""
    count = 0

    async def start(
        upstreams: dict[str, str], *, metadata: dict[str, Any] | None = None, **auth: Any
    ) -> AuthMirror:
        nonlocal count
        count += 1
        data_dir = tmp_path / f"auth-mirror-{count}"
        settings = {
            "enabled": True,
            "hash_cost": AUTH_TEST_HASH_COST,
            "default_tenancy": "nodes",
            # The system administrator's allow-list for tenancies' rules: the test registries
            # run on loopback, so it is listed explicitly (as an operator would list theirs).
            "rule_hosts": ["127.0.0.1"],
            "registry_hosts": [AUTH_REGISTRY_HOST],
            **auth,
        }
        config = load_config(
            overrides={
                "storage": {"data_dir": str(data_dir), "chunk_size": 64 * 1024},
                "upstreams": [{"host": h, "url": u} for h, u in upstreams.items()],
                "default_upstream": next(iter(upstreams)),
                # The key file lives beside the data directory, never in the checkout.
                "encryption": {"kek_file": str(data_dir.with_name(data_dir.name + ".kek"))},
                "auth": settings,
                "metadata": metadata or {},
            },
            environ={},
        )
        clock = ManualClock()
        metrics = Metrics()
        announcements: list[str] = []
        app = build_app(config, clock=clock, metrics=metrics, announce=announcements.append)
        server = await aiohttp_server(app, host="127.0.0.1")
        mirror = Mirror(server, config, clock, metrics, data_dir, app)
        token = announcements[0].rsplit(" ", 1)[1] if announcements else ""
        return AuthMirror(mirror, token, announcements)

    return start


@pytest.fixture
async def auth_mirror(
    auth_mirror_factory: AuthMirrorFactory, upstream_registry: Registry
) -> AuthMirror:
    """An auth-enabled mirror in front of the module's real ``docker-registry``."""
    return await auth_mirror_factory({upstream_registry.host: upstream_registry.url})


DockerdFactory = Callable[..., Awaitable[Dockerd]]


def _require_root_and(*binaries: str) -> None:
    missing = [name for name in binaries if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (scripts/install-test-deps.sh)")
    if os.geteuid() != 0:
        pytest.skip(f"{binaries[0]} needs root here")


@pytest.fixture
async def dockerd_factory(tmp_path: Path) -> AsyncIterator[DockerdFactory]:
    """Start private Docker engines (``registry_mirrors=(url, ...)``); stopped at test end."""
    _require_root_and("dockerd", "docker")
    started: list[Dockerd] = []

    async def start(*, registry_mirrors: tuple[str, ...] = ()) -> Dockerd:
        daemon = Dockerd(tmp_path / f"dockerd-{len(started)}", registry_mirrors=registry_mirrors)
        started.append(daemon)
        await daemon.start()
        return daemon

    yield start
    for daemon in started:
        await daemon.stop()


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    """A ``podman`` with private storage and ``registries.conf`` (see :class:`Podman`)."""
    _require_root_and("podman")
    client = Podman(tmp_path / "podman")
    yield client
    client.close()


@pytest.fixture
async def cri_containerd(tmp_path: Path, hosts_dir: Path) -> AsyncIterator[CriContainerd]:
    """A private ``containerd`` with the CRI plugin reading registry hosts from ``hosts_dir``."""
    _require_root_and("containerd")
    async with CriContainerd(tmp_path / "cri", hosts_dir) as daemon:
        yield daemon
