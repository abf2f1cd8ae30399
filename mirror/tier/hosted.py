"""Hosted blobs on a tier: ``factor`` copies on the first replicas of the digest's walk.

A pushed blob has no upstream to be fetched again from, so one copy is not enough. Its
*holders* are the first ``factor`` replicas on its ring walk that answer (the owner first,
then the next: where nginx and the peers look for it). A commit sends a copy to every holder
before the push is answered (:meth:`HostedCopies.replicate`); a read that misses the local
disk asks the replicas on the walk (:meth:`HostedCopies.open_copy`); and
:meth:`HostedCopies.repair` makes this replica hold what it should after a replica was lost or
replaced (each replica pulls its own share, so repairs need no coordination).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from mirror.blobstore.interface import BlobStore, iter_range
from mirror.errors import DigestMismatch, ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.tier.peer import PeerBlob, PeerClient, PeerUnavailable, hosted_url
from mirror.tier.placement import Placement
from mirror.verify import Verifier

log = logging.getLogger(__name__)

CHUNK = 256 * 1024


class NotReplicated(RegistryError):
    """Fewer than ``factor`` replicas could take a copy: the push is not durable."""

    def __init__(self, digest: Digest, copies: int, factor: int) -> None:
        super().__init__(
            ErrorCode.UNAVAILABLE,
            f"only {copies} of {factor} replicas hold the blob; push it again",
            detail={"digest": str(digest), "copies": copies, "factor": factor},
        )


@dataclass
class RepairReport:
    """What one repair pass did on this replica."""

    checked: int = 0
    restored: int = 0
    # Digests this replica should hold but no live replica has: lost.
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The report as JSON."""
        return {"checked": self.checked, "restored": self.restored, "missing": self.missing}


class HostedCopies:
    """Replication of hosted blobs from and to this replica's ``store``."""

    def __init__(
        self, store: BlobStore, placement: Placement, peers: PeerClient, *, factor: int
    ) -> None:
        self._store = store
        self._placement = placement
        self._peers = peers
        self.factor = min(factor, len(placement.ring.members))

    @property
    def self_server(self) -> str:
        """This replica's server string."""
        return self._placement.self_server

    def _walk(self, digest: Digest) -> list[str]:
        return list(self._placement.ring.walk(str(digest)))

    async def _holds(self, server: str, digest: Digest) -> int | None:
        """The size ``server`` holds of ``digest`` (``None``: not held); PeerUnavailable when
        it does not answer (then it is passed over for a while)."""
        if server == self.self_server:
            return await self._store.stat(digest)
        try:
            size = await self._peers.holds(server, hosted_url(self._placement.url(server), digest))
        except PeerUnavailable:
            self._placement.mark_down(server)
            raise
        self._placement.mark_up(server)
        return size

    async def replicate(self, digest: Digest) -> int:
        """Put a copy of ``digest`` (held here) on each of its holders; the number of holders
        that have it. ``NotReplicated`` when fewer than ``factor`` replicas could take one."""
        size = await self._store.stat(digest)
        if size is None:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
        copies = 0
        for server in self._walk(digest):
            if copies == self.factor:
                break
            if server != self.self_server and self._placement.is_down(server):
                continue
            try:
                if await self._holds(server, digest) is None:
                    await self._send(server, digest, size)
            except PeerUnavailable as exc:
                log.warning("replica %s takes no copy of %s: %s", server, digest, exc.reason)
                continue
            copies += 1
        if copies < self.factor:
            raise NotReplicated(digest, copies, self.factor)
        return copies

    async def _send(self, server: str, digest: Digest, size: int) -> None:
        opened = await self._store.open(digest)
        if opened is None:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
        reader, _ = opened
        url = hosted_url(self._placement.url(server), digest, size)
        try:
            await self._peers.store(server, url, iter_range(reader, 0, size - 1, CHUNK))
        finally:
            await reader.close()

    async def open_copy(self, digest: Digest, offset: int = 0) -> PeerBlob:
        """The blob from the first other replica on its walk that holds it (the caller
        verifies the bytes); ``BLOB_UNKNOWN`` when none does."""
        for server in self._walk(digest):
            if server == self.self_server or self._placement.is_down(server):
                continue
            url = hosted_url(self._placement.url(server), digest)
            try:
                return await self._peers.open_blob(server, url, offset)
            except PeerUnavailable as exc:
                if exc.down:
                    self._placement.mark_down(server)
            except RegistryError as exc:
                if exc.code is not ErrorCode.BLOB_UNKNOWN:
                    raise
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})

    async def size_anywhere(self, digest: Digest) -> int | None:
        """The blob's size if this replica or one on its walk holds it."""
        for server in self._walk(digest):
            if server != self.self_server and self._placement.is_down(server):
                continue
            try:
                size = await self._holds(server, digest)
            except PeerUnavailable:
                continue
            if size is not None:
                return size
        return None

    async def fetch(self, digest: Digest) -> bool:
        """Copy ``digest`` from a replica that holds it onto this one, verified; whether it
        is held here now."""
        if await self._store.stat(digest) is not None:
            return True
        try:
            blob = await self.open_copy(digest)
        except RegistryError:
            return False
        writer = self._store.create(digest)
        verifier = Verifier(digest, blob.size)
        try:
            async for chunk in blob.iter_chunks(CHUNK):
                verifier.update(chunk)
                await writer.write(chunk)
            verifier.verify()
            await writer.commit()
        except (DigestMismatch, RegistryError, OSError) as exc:
            log.warning("copy of %s from %s refused: %s", digest, blob.server, exc)
            await writer.abort()
            blob.close()
            return False
        except BaseException:
            await writer.abort()
            blob.close()
            raise
        blob.release()
        return True

    async def _holders(self, digest: Digest) -> list[str]:
        """The first ``factor`` replicas on the walk that answer (this one always does)."""
        holders: list[str] = []
        for server in self._walk(digest):
            if len(holders) == self.factor:
                break
            if server == self.self_server:
                holders.append(server)
                continue
            try:
                await self._holds(server, digest)
            except PeerUnavailable:
                continue
            holders.append(server)
        return holders

    async def repair(self, digests: Iterable[Digest]) -> RepairReport:
        """Make this replica hold each of ``digests`` it is a holder of (copied from one that
        has it): run on every replica, the replication factor is restored."""
        report = RepairReport()
        for digest in dict.fromkeys(digests):
            report.checked += 1
            if self.self_server not in await self._holders(digest):
                continue
            if await self._store.stat(digest) is not None:
                continue
            if await self.fetch(digest):
                report.restored += 1
            else:
                report.missing.append(str(digest))
        if report.restored or report.missing:
            log.info("hosted repair: %s", report.as_dict())
        return report


class HostedDigests(Protocol):
    """Lists the digests of every hosted link (blobs and manifests) in the shared metadata."""

    def __call__(self) -> Iterable[Digest]:
        """Every hosted link's digest (repeats allowed)."""
        ...
