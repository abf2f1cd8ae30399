"""What ``/readyz`` checks: the metadata store is there and answers, and some upstream answers.

An upstream is usable when its ``GET /v2/`` gets any HTTP answer (401 included) within
``PROBE_TIMEOUT`` seconds; every reason is one line, never a Python repr.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp

from mirror.db.roles import Repositories
from mirror.upstream.endpoint import UpstreamEndpoint
from mirror.upstream.status import connection_failure

PROBE_TIMEOUT = 2.0


def metadata_problem(metadata: Repositories, directory: Path) -> str | None:
    """Why the metadata store cannot serve (its directory is gone, or it fails), or None."""
    if not directory.is_dir():
        return f"metadata directory {directory} is missing"
    try:
        next(iter(metadata.repositories()), None)
    except Exception as exc:  # any store failure means not ready; the name is the reason
        return f"metadata store failed: {type(exc).__name__}"
    return None


def _ssl_for(endpoint: UpstreamEndpoint) -> ssl.SSLContext | bool:
    if not endpoint.verify_tls:
        return False
    if endpoint.ca_file:
        return ssl.create_default_context(cafile=endpoint.ca_file)
    return True


async def upstream_problem(endpoint: UpstreamEndpoint) -> str | None:
    """Why ``endpoint`` cannot be reached (one line), or None when ``GET /v2/`` is answered."""
    timeout = aiohttp.ClientTimeout(total=min(PROBE_TIMEOUT, endpoint.connect_timeout or 1.0))
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            url = endpoint.url.rstrip("/") + "/v2/"
            async with session.get(url, ssl=_ssl_for(endpoint), allow_redirects=False):
                return None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return connection_failure(exc)


async def upstream_problems(endpoints: list[UpstreamEndpoint]) -> dict[str, str | None]:
    """:func:`upstream_problem` of every endpoint, probed concurrently, by host."""
    found = await asyncio.gather(*(upstream_problem(e) for e in endpoints))
    return {e.host: problem for e, problem in zip(endpoints, found, strict=True)}
