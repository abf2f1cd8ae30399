"""Wiring this server into its tier: the secret, the placement and the peer session."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from mirror.clock import Clock
from mirror.config.model import ConfigError, TierConfig
from mirror.db.roles import Links
from mirror.hosted.names import HOSTED_PREFIX
from mirror.pullthrough.prewarm import Sleep
from mirror.pullthrough.source import BlobSource
from mirror.tier.hosted import HostedCopies, HostedDigests
from mirror.tier.hosted_source import HostedSource
from mirror.tier.peer import PeerClient
from mirror.tier.placement import Placement
from mirror.tier.replica import Replica
from mirror.tier.signing import PeerSigner
from mirror.upstream.client import UpstreamClient

log = logging.getLogger(__name__)


def read_secret(path: str) -> bytes:
    """The tier secret from ``tier.secret_file`` (``ConfigError`` naming the key if unusable)."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"tier.secret_file: cannot read {path}: {exc.strerror}") from None
    if len(secret) < 16:
        raise ConfigError(f"tier.secret_file: {path} must hold at least 16 bytes")
    return secret


@asynccontextmanager
async def open_replica(
    tier: TierConfig, clock: Clock, *, shared_store: bool = False
) -> AsyncIterator[Replica | None]:
    """This server as a replica of ``tier`` (``None`` when standalone), with an open session
    to its peers for as long as the context lasts; ``shared_store`` when the replicas are the
    workers of one server, sharing its data directory."""
    if not tier.enabled:
        yield None
        return
    signer = PeerSigner(read_secret(tier.secret_file), clock)
    placement = Placement(
        tier.replicas, tier.self, clock, down_for=tier.peer_down_for, balancer=tier.balancer
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=tier.peer_connect_timeout, sock_read=tier.peer_read_timeout
    )
    # auto_decompress off: blob bytes are verified against their digest exactly as sent.
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        peers = PeerClient(session, signer, placement.self_server)
        yield Replica(
            placement,
            signer,
            peers,
            cache_peer_blobs=tier.cache_peer_blobs,
            hosted_replication=tier.hosted_replication,
            shared_store=shared_store,
        )


def blob_sources(
    pool: Callable[[str], UpstreamClient], replica: Replica | None, copies: HostedCopies | None
) -> Callable[[str], BlobSource]:
    """Where the blob service reads what is not on this disk: upstream clients standalone;
    on a tier, the owner replica for cached blobs and the replicas' copies for hosted ones."""
    if replica is None:
        return pool

    def source(key: str) -> BlobSource:
        if copies is not None and key.startswith(HOSTED_PREFIX):
            return HostedSource(copies)
        return replica.source(key, pool(key))

    return source


def hosted_digests(metadata: Links) -> HostedDigests:
    """The digests of every hosted link in ``metadata`` (shared by the tier's replicas)."""
    return lambda: (digest for _, _, digest in metadata.links_under(HOSTED_PREFIX))


async def repair_periodically(
    copies: HostedCopies, digests: HostedDigests, interval: float, sleep: Sleep
) -> None:
    """A repair pass now (a replaced replica fetches its share at once), then every
    ``interval`` seconds until cancelled; a pass that fails is logged and retried later."""
    while True:
        try:
            await copies.repair(digests())
        except Exception:
            log.exception("hosted repair pass failed")
        await sleep(interval)
