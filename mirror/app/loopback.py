"""The mirror itself in-process on 127.0.0.1 in front of one upstream (``mirror demo``,
``mirror check --start-mirror``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mirror.app.build import build_app
from mirror.config import load_config
from mirror.metrics import Metrics
from mirror.testing.loopback import loopback_socket, serve_on_loopback


@asynccontextmanager
async def mirror_on_loopback(
    work_dir: Path, upstream_host: str, upstream_url: str, metrics: Metrics, **cache: Any
) -> AsyncIterator[str]:
    """A mirror with its data (``work_dir/mirror-data``) and key file in ``work_dir``, the one
    upstream ``upstream_host`` served from ``upstream_url`` as the default, and ``cache``
    settings; yields its URL."""
    listener = loopback_socket()
    config = load_config(
        overrides={
            "server": {"listen": f"127.0.0.1:{listener.getsockname()[1]}"},
            "storage": {"data_dir": str(work_dir / "mirror-data")},
            "encryption": {"kek_file": str(work_dir / "mirror.kek")},
            "upstreams": [{"host": upstream_host, "url": upstream_url}],
            "default_upstream": upstream_host,
            "cache": cache,
        },
        environ={},
    )
    async with serve_on_loopback(build_app(config, metrics=metrics), listener) as url:
        yield url
