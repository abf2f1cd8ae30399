"""The cache dashboard: hit ratio, bytes served from the cache vs fetched upstream (saved),
upstream requests and errors per upstream, fills in progress, disk used vs the capacity limit,
evictions, with charts of the last hour. The figures are the whole mirror's: system
administrators only (with auth off, on loopback)."""

from __future__ import annotations

from aiohttp import web

from mirror.console.chart import Series, chart, rates
from mirror.console.keys import SAMPLES
from mirror.console.render import page
from mirror.console.samples import Sample, SampleRing, sample
from mirror.console.viewer import mirror_app, viewer
from mirror.errors import ErrorCode, RegistryError
from mirror.web.keys import CACHE, SERVICES

# Line colours of the per-upstream chart (contrast >= 4.5 on white), reused past the fourth.
_PALETTE = ("#0b5cad", "#a61b1b", "#1d7a3a", "#5a3d8a")


def upstream_series(history: list[Sample]) -> list[Series]:
    """Per upstream, its requests per second and its errors per second between samples."""
    hosts = sorted({u.host for s in history for u in s.upstreams})
    found = []
    for i, host in enumerate(hosts):
        colour = _PALETTE[i % len(_PALETTE)]
        figures = [(s.at, {u.host: u for u in s.upstreams}.get(host)) for s in history]
        requests = [(t, u.requests if u else 0.0) for t, u in figures]
        errors = [(t, u.errors if u else 0.0) for t, u in figures]
        found.append(Series(f"{host} requests/s", colour, rates(requests)))
        found.append(Series(f"{host} errors/s", colour, rates(errors), dashed=True))
    return found


def current(app: web.Application, at: float) -> Sample:
    """The mirror's figures now."""
    capped = app.get(CACHE)
    used = float(capped.total) if capped is not None else 0.0
    capacity = float(capped.max_size) if capped is not None else 0.0
    return sample(app[SERVICES].metrics.registry, at, used, capacity)


async def dashboard(request: web.Request) -> web.Response:
    """``GET /console/cache``."""
    who = viewer(request)
    if not who.system_admin:
        raise RegistryError(ErrorCode.DENIED, "the cache dashboard is for system administrators")
    app = mirror_app(request)
    ring: SampleRing = request.app[SAMPLES]
    history = list(ring)
    now = current(app, history[-1].at if history else 0.0)
    traffic = chart(
        [
            Series(
                "from cache (B/s)", "#0b5cad", rates([(s.at, s.bytes_from_cache) for s in history])
            ),
            Series(
                "from upstream (B/s)",
                "#a61b1b",
                rates([(s.at, s.bytes_from_upstream) for s in history]),
            ),
        ]
    )
    ratio = chart(
        [
            Series(
                "hit ratio",
                "#1d7a3a",
                tuple((s.at, s.hit_ratio) for s in history if s.hit_ratio is not None),
            )
        ]
    )
    upstreams = chart(upstream_series(history))
    disk = chart([Series("disk used (B)", "#5a3d8a", tuple((s.at, s.disk_used) for s in history))])
    return page(
        request,
        "cache.html",
        who,
        now=now,
        saved=now.bytes_from_cache,
        samples=len(history),
        traffic=traffic,
        ratio=ratio,
        disk=disk,
        upstreams=upstreams,
    )
