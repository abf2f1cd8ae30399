"""Wiring this server into its tier: the secret, the placement and the peer session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from mirror.clock import Clock
from mirror.config.model import ConfigError, TierConfig
from mirror.tier.peer import PeerClient
from mirror.tier.placement import Placement
from mirror.tier.replica import Replica
from mirror.tier.signing import PeerSigner


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
    placement = Placement(tier.replicas, tier.self, clock, down_for=tier.peer_down_for)
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
            shared_store=shared_store,
        )
