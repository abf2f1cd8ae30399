"""The shared bench: the upstream registry (seeded once), nginx, and factories for fresh
mirrors and distribution proxies, plus reading the upstream's access log between marks."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from benchmarks.procs import Processes
from benchmarks.results import Results
from benchmarks.seed import Seeded, seed
from benchmarks.servers import MirrorServer, MirrorVariant, Nginx
from benchmarks.settings import Settings
from tests.peers.accesslog import AccessLogEntry, parse_access_log
from tests.peers.registry import Registry

T = TypeVar("T")


def rotated(items: Sequence[T], rep: int) -> list[T]:
    """``items`` in a different order on each repetition: rotated by ``rep // 2`` and reversed
    on odd repetitions, so with two targets they alternate, and with three every order
    appears within six repetitions."""
    n = len(items)
    order = [items[(i + rep // 2) % n] for i in range(n)]
    return order[::-1] if rep % 2 else order


@dataclass
class Bench:
    """What every scenario runs against."""

    settings: Settings
    work: Path
    processes: Processes
    results: Results
    upstream: Registry
    nginx: Nginx
    seeded: Seeded
    started: float
    _serial: int = 0

    def progress(self, message: str) -> None:
        """One progress line with the elapsed time."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def _next_dir(self, kind: str) -> Path:
        self._serial += 1
        return self.work / f"{kind}-{self._serial}"

    def mirror(
        self,
        variant: MirrorVariant | None = None,
        tag_ttl: float | None = None,
        port: int | None = None,
        upstream_url: str | None = None,
    ) -> MirrorServer:
        """A fresh mirror (empty cache) in front of the upstream, started (on ``port`` if
        given: a tier replica must know its own URL before it starts; reaching the upstream
        at ``upstream_url`` if given, e.g. through a WAN link)."""
        variant = variant or MirrorVariant("mirror", self.settings.mirror_args)
        url = upstream_url or self.upstream.url
        server = MirrorServer(self._next_dir("mirror"), self.upstream.host, url, variant, tag_ttl)
        if port is not None:
            server.port = port
        return server.start(self.processes)

    def stop_mirror(self, server: MirrorServer) -> None:
        """Stop a mirror and delete its cache."""
        server.stop(self.processes)

    def proxy(self, remote_url: str | None = None) -> Registry:
        """A fresh distribution pull-through proxy (empty cache) in front of the upstream
        (reached at ``remote_url`` if given)."""
        registry = Registry(
            self._next_dir("proxy"), proxy_remote_url=remote_url or self.upstream.url
        )
        registry.start_sync()
        self.processes.add_callback(f"proxy {registry.root_dir.name}", registry.stop_sync)
        return registry

    def stop_proxy(self, registry: Registry) -> None:
        """Stop a proxy by PID and delete its cache."""
        registry.stop_sync()
        self.processes.remove(f"proxy {registry.root_dir.name}")
        shutil.rmtree(registry.root_dir, ignore_errors=True)

    def hosted_registry(self) -> Registry:
        """A fresh docker-registry as a hosted registry (filesystem storage, no proxy)."""
        registry = Registry(self._next_dir("hosted"))
        registry.start_sync()
        self.processes.add_callback(f"hosted {registry.root_dir.name}", registry.stop_sync)
        return registry

    def stop_hosted_registry(self, registry: Registry) -> None:
        """Stop a hosted registry by PID and delete its storage."""
        registry.stop_sync()
        self.processes.remove(f"hosted {registry.root_dir.name}")
        shutil.rmtree(registry.root_dir, ignore_errors=True)

    # Blob URLs ---------------------------------------------------------------------------

    @staticmethod
    def blob_url(base: str, repo: str, digest: str) -> str:
        return f"{base}/v2/{repo}/blobs/{digest}"

    def nginx_url(self, digest: str) -> str:
        """The upstream's own data file of ``digest``, served by nginx."""
        hexa = digest.removeprefix("sha256:")
        return f"{self.nginx.url}/docker/registry/v2/blobs/sha256/{hexa[:2]}/{hexa}/data"

    # Upstream access log -----------------------------------------------------------------

    def mark(self) -> int:
        """The current end of the upstream's access log."""
        path = self.upstream.access_log_path
        return path.stat().st_size if path.exists() else 0

    def upstream_since(self, mark: int) -> list[AccessLogEntry]:
        """Upstream requests logged after ``mark``."""
        with self.upstream.access_log_path.open("rb") as log:
            log.seek(mark)
            return parse_access_log(log.read().decode(errors="replace"))

    def settle(
        self, mark: int, cached: Sequence[Path] = (), within: float | None = None
    ) -> list[AccessLogEntry]:
        """Wait until every path in ``cached`` exists (a proxy may still be fetching in the
        background after its client got the bytes) and the upstream has logged nothing new
        for ``settings.settle_quiet`` seconds, at most ``within``; return the upstream
        requests logged after ``mark``."""
        deadline = time.monotonic() + (within or self.settings.transfer_timeout)
        size, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_size = self.mark()
            if now_size != size:
                size, quiet_since = now_size, time.monotonic()
            elif time.monotonic() - quiet_since >= self.settings.settle_quiet and all(
                path.exists() for path in cached
            ):
                break
            time.sleep(0.05)
        else:
            self.progress(f"  warning: upstream did not settle within {within} s")
        return self.upstream_since(mark)


def proxy_blob_path(registry: Registry, digest: str) -> Path:
    """Where a distribution registry stores a committed blob."""
    hexa = digest.removeprefix("sha256:")
    return registry.storage_dir / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"


def blob_gets(entries: list[AccessLogEntry], digest: str) -> list[AccessLogEntry]:
    """The upstream ``GET``\\ s of blob ``digest`` among ``entries``."""
    return [e for e in entries if e.method == "GET" and f"/blobs/{digest}" in e.path]


@contextmanager
def large_layer_bench(name: str) -> Iterator[Bench]:
    """A bench for the one-off tools (A/B runs, profiles): an upstream seeded with the large
    layer (and two small ones) and nginx beside it, in a work directory removed afterwards."""
    settings = Settings.for_mode(False, Path(tempfile.gettempdir()) / name)
    processes = Processes()
    work = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    try:
        upstream = Registry(work / "upstream")
        upstream.start_sync()
        processes.add_callback("upstream registry", upstream.stop_sync)
        seeded = seed(
            upstream, work, large_size=settings.large_size, layer_count=2, layer_size=4096
        )
        nginx = Nginx(work / "nginx", upstream.storage_dir).start(processes)
        results = Results(machine={}, settings={})
        yield Bench(settings, work, processes, results, upstream, nginx, seeded, time.monotonic())
    finally:
        processes.close()
        shutil.rmtree(work, ignore_errors=True)
