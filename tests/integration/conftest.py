"""The mirror under test, in-process on a real 127.0.0.1 port, in front of a real upstream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.app import build_app
from mirror.clock import ManualClock
from mirror.config import Config, load_config
from mirror.metrics import Metrics
from mirror.retention.service import RetentionService
from mirror.store.filesystem import FilesystemBlobStore
from mirror.testing.registry import Registry
from mirror.web.admin import RETENTION
from mirror.web.context import SERVICES, Services


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
        return f"http://{self.host}"

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
        retention: dict[str, Any] | None = None,
        store_factory: Callable[[Path], FilesystemBlobStore] = FilesystemBlobStore,
        **cache: Any,
    ) -> Mirror:
        nonlocal count
        count += 1
        data_dir = data_dir or tmp_path / f"mirror-{count}"
        config = load_config(
            overrides={
                "storage": {"data_dir": str(data_dir), "chunk_size": 64 * 1024},
                "cache": cache,
                "upstreams": [{"host": h, "url": u} for h, u in upstreams.items()],
                "default_upstream": next(iter(upstreams)),
                "retention": retention or {},
            },
            environ={},
        )
        clock = ManualClock()
        metrics = Metrics()
        app = build_app(config, clock=clock, metrics=metrics, store_factory=store_factory)
        server = await aiohttp_server(app, host="127.0.0.1")
        return Mirror(server, config, clock, metrics, data_dir, app)

    return start


@pytest.fixture
async def mirror(mirror_factory: MirrorFactory, upstream_registry: Registry) -> Mirror:
    """A mirror whose default (and only) upstream is the module's real ``docker-registry``."""
    return await mirror_factory({upstream_registry.host: upstream_registry.url})
