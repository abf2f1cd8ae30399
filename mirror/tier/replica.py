"""This process as a member of a tier: its placement, the peer signer and the caching rule."""

from __future__ import annotations

from dataclasses import dataclass

from mirror.blobstore.interface import BlobStore
from mirror.oci.digest import Digest
from mirror.tier.hosted import Audit, HostedCopies
from mirror.tier.peer import PeerClient
from mirror.tier.placement import Placement
from mirror.tier.signing import PeerSigner
from mirror.tier.source import TierSource
from mirror.upstream.client import UpstreamClient


@dataclass(frozen=True)
class Replica:
    """One replica of the tier; ``cache_peer_blobs`` keeps copies of blobs read from owners.

    ``shared_store``: the replicas share one blob store (the workers of one server), so a
    replica keeps only what it fills itself; what it reads from the owner, the owner stores.
    """

    placement: Placement
    signer: PeerSigner
    peers: PeerClient
    cache_peer_blobs: bool = False
    # Copies of each hosted blob (``tier.hosted_replication``).
    hosted_replication: int = 2
    shared_store: bool = False

    def source(self, key: str, upstream: UpstreamClient) -> TierSource:
        """Where the blobs of upstream ``key`` are read from on this replica."""
        return TierSource(key, upstream, self.placement, self.peers)

    def hosted_copies(self, store: BlobStore, audit: Audit | None = None) -> HostedCopies:
        """The replication of hosted blobs held in ``store``, this replica's disk (removals
        of extra copies recorded in ``audit``)."""
        return HostedCopies(
            store,
            self.placement,
            self.peers,
            factor=self.hosted_replication,
            audit=audit,
            remove_extras=not self.shared_store,
        )

    def keeps(self, digest: Digest) -> bool:
        """Whether a fill of ``digest`` on this replica is cached."""
        if self.shared_store:
            return self.placement.peer_for(digest) is None
        return self.placement.keeps(digest, cache_peer_blobs=self.cache_peer_blobs)
