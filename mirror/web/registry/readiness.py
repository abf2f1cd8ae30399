"""What ``/readyz`` checks: the metadata store is there and answers, and some upstream answers
(offline: no upstream is probed, the mirror is ready on its cache alone).

An upstream is usable when its ``GET /v2/`` gets any HTTP answer (401 included) within
``PROBE_TIMEOUT`` seconds; every reason is one line, never a Python repr.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mirror.db.roles import Repositories
from mirror.upstream.client import UpstreamClient

PROBE_TIMEOUT = 2.0
# What an offline mirror's readiness says of each upstream (none is contacted).
OFFLINE_CHECK = "offline: not contacted (cache.offline)"


def metadata_problem(metadata: Repositories, directory: Path) -> str | None:
    """Why the metadata store cannot serve (its directory is gone, or it fails), or None."""
    if not directory.is_dir():
        return f"metadata directory {directory} is missing"
    try:
        next(iter(metadata.repositories()), None)
    except Exception as exc:  # any store failure means not ready; the name is the reason
        return f"metadata store failed: {type(exc).__name__}"
    return None


async def upstream_problem(client: UpstreamClient) -> str | None:
    """Why ``client``'s upstream cannot be reached (one line), or None when ``GET /v2/`` is
    answered; the probe goes through the client's own transport (so offline mode holds)."""
    return await client.probe(min(PROBE_TIMEOUT, client.endpoint.connect_timeout or 1.0))


async def upstream_problems(clients: list[UpstreamClient]) -> dict[str, str | None]:
    """:func:`upstream_problem` of every client, probed concurrently, by host."""
    found = await asyncio.gather(*(upstream_problem(c) for c in clients))
    return {c.endpoint.host: problem for c, problem in zip(clients, found, strict=True)}
