"""``mirror tier repair``: one repair pass on every replica, asked over the signed route.

Each replica copies onto its own disk the hosted blobs it should hold and does not (it knows
them from the shared metadata); asking all of them restores the replication factor of every
hosted blob that some replica still holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
from yarl import URL

from mirror.tier.placement import server_of
from mirror.tier.signing import HEADER, PeerSigner

REPAIR_PATH = "/_tier/repair"


async def repair_tier(
    replicas: Sequence[str], signer: PeerSigner, sender: str, *, per_replica: float
) -> list[dict[str, Any]]:
    """Each replica's report of its pass (``{"replica", "error"}`` when it did not answer)."""
    reports: list[dict[str, Any]] = []
    limits = aiohttp.ClientTimeout(total=per_replica)
    async with aiohttp.ClientSession(timeout=limits) as session:
        for base in replicas:
            url = URL(base.rstrip("/")).with_path(REPAIR_PATH)
            headers = {HEADER: signer.sign("POST", url.raw_path_qs, sender)}
            try:
                async with session.post(url, headers=headers) as resp:
                    if resp.status != 200:
                        reports.append(
                            {"replica": server_of(base), "error": f"answered {resp.status}"}
                        )
                        continue
                    reports.append(await resp.json())
            except (aiohttp.ClientError, TimeoutError) as exc:
                reports.append({"replica": server_of(base), "error": type(exc).__name__})
    return reports
