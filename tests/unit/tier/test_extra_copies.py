"""Removing a copy held beyond the factor: only once each holder proves the content.

This replica holds a hosted blob it is not a holder of; the two holders are HTTP peers on
127.0.0.1 that list the blob in their inventory. A peer that holds the bytes answers the
content proof for the nonce it is sent; a peer that only *claims* the blob (its inventory
lists it, its proof is made from other bytes) must not be believed. The store is a real
filesystem store, the requests real HTTP through :class:`PeerClient`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.clock import ManualClock
from mirror.oci.digest import Digest
from mirror.tier.hosted import HostedCopies, RepairReport
from mirror.tier.inventory import INVENTORY_PATH, PROOF_PATH
from mirror.tier.peer import PeerClient
from mirror.tier.placement import Placement
from mirror.tier.signing import PeerSigner
from tests.peers.ports import free_port

SECRET = b"0123456789abcdef0123456789abcdef"


class Audit:
    """The audit lines written, in memory."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})


def peer_app(held: dict[str, bytes]) -> web.Application:
    """A peer whose inventory lists ``held`` and whose proofs hash the bytes it has there."""

    async def inventory(request: web.Request) -> web.Response:
        return web.Response(text="".join(f"{d}\n" for d in sorted(held)))

    async def proof(request: web.Request) -> web.Response:
        data = held[request.match_info["digest"]]
        nonce = bytes.fromhex(request.query["nonce"])
        return web.Response(text=hashlib.sha256(nonce + data).hexdigest())

    app = web.Application()
    app.router.add_get(INVENTORY_PATH, inventory)
    app.router.add_get(PROOF_PATH, proof)
    return app


@pytest.fixture
async def extra_copy(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[Callable[[bool], Any]]:
    """Run one repair pass where this replica holds an extra copy; ``liar`` makes the second
    holder claim the blob with other bytes. Returns (report, audit, store)."""
    sessions: list[aiohttp.ClientSession] = []

    async def run(
        liar: bool, shared_disk: bool = False
    ) -> tuple[RepairReport, Audit, FilesystemBlobStore]:
        data = os.urandom(50_000)
        digest = Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())
        while True:  # three ports on which this replica is third on the digest's walk
            ports = [free_port() for _ in range(3)]
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            placement = Placement(urls, urls[2], ManualClock())
            if list(placement.ring.walk(str(digest)))[2] == placement.self_server:
                break
        second = os.urandom(50_000) if liar else data
        for port, held in zip(ports[:2], (data, second), strict=True):
            await aiohttp_server(peer_app({str(digest): held}), host="127.0.0.1", port=port)
        store = FilesystemBlobStore(tmp_path / f"store-{liar}")
        await store.put(digest, data)
        session = aiohttp.ClientSession()
        sessions.append(session)
        peers = PeerClient(session, PeerSigner(SECRET, ManualClock()), placement.self_server)
        audit = Audit()
        copies = HostedCopies(
            store, placement, peers, factor=2, audit=audit, remove_extras=not shared_disk
        )
        report = await copies.repair([digest])
        return report, audit, store

    yield run
    for session in sessions:
        await session.close()


async def test_a_copy_beyond_the_factor_goes_once_both_holders_prove_theirs(
    extra_copy: Callable[[bool], Any],
) -> None:
    report, audit, store = await extra_copy(False)
    assert report.removed == 1
    assert report.peer_requests == 4  # two inventories, two proofs
    assert list(store.digests()) == []
    (event,) = audit.events
    assert event["event"] == "tier_extra_copy_removed" and len(event["holders"]) == 2


async def test_a_holder_that_only_claims_the_blob_keeps_the_copy_here(
    extra_copy: Callable[[bool], Any],
) -> None:
    report, audit, store = await extra_copy(True)
    assert report.removed == 0
    assert len(list(store.digests())) == 1
    assert audit.events == []


async def test_replicas_sharing_one_disk_never_remove_a_copy(
    extra_copy: Callable[..., Any],
) -> None:
    # The workers of one server: the holders' "copies" are this very file.
    report, audit, store = await extra_copy(False, shared_disk=True)
    assert report.removed == 0
    assert len(list(store.digests())) == 1
    assert audit.events == []
