"""Pre-warming: fetch a list of images into the cache before any node asks for them.

Each image is pulled through the same services a client's pull uses (so single-flight holds
against concurrent pulls, and every digest is verified): its manifest by tag (revalidated, so a
scheduled run refreshes tags) or digest, every child of an index (all platforms), and every
blob, each blob fetched from upstream only if it is not cached yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mirror.clock import Clock
from mirror.errors import RegistryError
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.oci.media import parse_manifest
from mirror.oci.reflist import ImageRef
from mirror.pullthrough.blobs import BlobService
from mirror.pullthrough.manifests import Manifest, ManifestService
from mirror.upstream.routing import Router, Target

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What pre-warming one image did: its digest, counts and bytes, or why it failed."""

    reference: str
    ok: bool
    digest: str | None = None
    manifests: int = 0
    blobs: int = 0
    blobs_fetched: int = 0
    bytes: int = 0
    bytes_fetched: int = 0
    seconds: float = 0.0
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The result as the admin API answers it."""
        return asdict(self)


@dataclass(slots=True)
class _Tally:
    manifests: int = 0
    blobs: int = 0
    blobs_fetched: int = 0
    bytes: int = 0
    bytes_fetched: int = 0


class Prewarmer:
    """Pre-warms images through the pull-through services, ``concurrency`` images at a time."""

    def __init__(
        self,
        router: Router,
        manifests: ManifestService,
        blobs: BlobService,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._router = router
        self._manifests = manifests
        self._blobs = blobs
        self._metrics = metrics
        self._clock = clock

    async def warm(self, ref: ImageRef) -> ImageResult:
        """Fetch one image (every platform of an index) into the cache; never raises for a
        registry failure, which becomes the result's ``error``."""
        started = self._clock.monotonic()
        tally = _Tally()
        try:
            target = self._router.resolve(ref.repository, ref.registry)
            if ref.digest is not None:
                manifest = await self._manifests.by_digest(target, ref.digest)
            else:
                manifest = await self._manifests.by_tag(target, ref.tag or "latest")
            await self._walk(target, manifest, tally)
        except (RegistryError, OSError) as exc:
            self._metrics.prewarmed.labels("failed").inc()
            log.warning("pre-warming %s failed: %s", ref, exc)
            return ImageResult(
                str(ref),
                False,
                seconds=self._clock.monotonic() - started,
                error=getattr(exc, "message", None) or str(exc),
            )
        self._metrics.prewarmed.labels("ok").inc()
        return ImageResult(
            str(ref),
            True,
            str(manifest.digest),
            tally.manifests,
            tally.blobs,
            tally.blobs_fetched,
            tally.bytes,
            tally.bytes_fetched,
            self._clock.monotonic() - started,
        )

    async def _walk(self, target: Target, manifest: Manifest, tally: _Tally) -> None:
        """Count ``manifest`` and fetch what it references (children first, then blobs)."""
        tally.manifests += 1
        tally.bytes += len(manifest.body)
        info = parse_manifest(manifest.body, manifest.media_type)
        children = [child[0] for child in info.children]
        for child in children:
            await self._walk(
                target, await self._manifests.by_digest(target, Digest.parse(child)), tally
            )
        for blob in dict.fromkeys(r for r in info.references if r not in children):
            size, fetched = await self._blobs.ensure(target, Digest.parse(blob))
            tally.blobs += 1
            tally.bytes += size
            if fetched:
                tally.blobs_fetched += 1
                tally.bytes_fetched += size

    async def warm_all(
        self,
        refs: Sequence[ImageRef],
        concurrency: int,
        on_done: Callable[[ImageResult], None] | None = None,
    ) -> list[ImageResult]:
        """Pre-warm ``refs``, at most ``concurrency`` at once; results in the order of ``refs``
        (``on_done`` is told of each as it finishes)."""
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(ref: ImageRef) -> ImageResult:
            async with gate:
                result = await self.warm(ref)
            if on_done is not None:
                on_done(result)
            return result

        return list(await asyncio.gather(*(one(ref) for ref in refs)))

    async def run_periodically(
        self, refs: Sequence[ImageRef], interval: float, concurrency: int, sleep: Sleep
    ) -> None:
        """The scheduled pre-warm list: a run now, then one every ``interval`` seconds (each
        revalidates the list's tags, so a moved tag is fetched before anyone pulls it)."""
        while True:
            results = await self.warm_all(refs, concurrency)
            failed = [r.reference for r in results if not r.ok]
            log.info(
                "scheduled pre-warm: %d of %d images warm%s",
                len(results) - len(failed),
                len(results),
                f"; failed: {', '.join(failed)}" if failed else "",
            )
            await sleep(interval)
