"""Hosted blobs on a tier: ``factor`` copies on the first replicas of the digest's walk.

A pushed blob has no upstream to be fetched again from, so one copy is not enough. Its
*holders* are the first ``factor`` replicas on its ring walk that answer (the owner first,
then the next: where nginx and the peers look for it). A commit sends a copy to every holder
before the push is answered (:meth:`HostedCopies.replicate`); a read that misses the local
disk asks the replicas on the walk (:meth:`HostedCopies.open_copy`); and
:meth:`HostedCopies.repair` makes this replica hold what it should after a replica was lost or
replaced (each replica pulls its own share, so repairs need no coordination), and drops the
copies it holds beyond the factor once the holders are proven to hold theirs.

A repair pass compares inventories (:mod:`mirror.tier.inventory`): one request per peer for
the list of hosted digests it holds, then one copy per digest this replica lacks and one
content proof per holder of each extra copy: requests grow with the differences, not with
the number of hosted digests. Extra copies are removed only while every replica answered
(the whole ring is known), only when each of the ``factor`` holders proves it holds the
content (a fresh nonce hashed with the bytes, never a HEAD or an inventory's claim), and
each removal is an audit line (``tier_extra_copy_removed``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mirror.blobstore.interface import BlobStore, iter_range
from mirror.errors import DigestMismatch, ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.tier.inventory import NONCE_BYTES, content_proof
from mirror.tier.peer import (
    PeerBlob,
    PeerClient,
    PeerUnavailable,
    hosted_url,
    inventory_url,
    proof_url,
)
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


class Audit(Protocol):
    """Where removals are recorded (the retention audit log: one JSON line per event)."""

    def write(self, event: str, **fields: Any) -> None:
        """Record ``event`` with ``fields``."""
        ...


@dataclass
class RepairReport:
    """What one repair pass did on this replica."""

    checked: int = 0
    restored: int = 0
    # Copies held here beyond the factor, removed once the holders proved theirs.
    removed: int = 0
    # Requests this pass sent to other replicas (inventories, copies, proofs).
    peer_requests: int = 0
    # Digests this replica should hold but no live replica has: lost.
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The report as JSON."""
        return {
            "checked": self.checked,
            "restored": self.restored,
            "removed": self.removed,
            "peer_requests": self.peer_requests,
            "missing": self.missing,
        }


class HostedCopies:
    """Replication of hosted blobs from and to this replica's ``store``."""

    def __init__(
        self,
        store: BlobStore,
        placement: Placement,
        peers: PeerClient,
        *,
        factor: int,
        audit: Audit | None = None,
        nonce: Callable[[int], bytes] = os.urandom,
        remove_extras: bool = True,
    ) -> None:
        self._store = store
        self._placement = placement
        self._peers = peers
        self.factor = min(factor, len(placement.ring.members))
        self._audit = audit
        self._nonce = nonce
        # Off when the replicas share one disk (the workers of one server): a copy another
        # replica "holds" there is this very file.
        self._remove_extras = remove_extras

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

    async def open_copy(
        self, digest: Digest, offset: int = 0, among: Collection[str] | None = None
    ) -> PeerBlob:
        """The blob from the first other replica on its walk that holds it (``among``: of
        those; the caller verifies the bytes); ``BLOB_UNKNOWN`` when none does."""
        for server in self._walk(digest):
            if server == self.self_server or self._placement.is_down(server):
                continue
            if among is not None and server not in among:
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

    async def fetch(self, digest: Digest, among: Collection[str] | None = None) -> bool:
        """Copy ``digest`` from a replica that holds it (``among``: one of those) onto this
        one, verified; whether it is held here now."""
        if await self._store.stat(digest) is not None:
            return True
        try:
            blob = await self.open_copy(digest, among=among)
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

    async def repair(self, digests: Iterable[Digest]) -> RepairReport:
        """Make this replica hold each of ``digests`` it is a holder of (copied from one that
        has it) and drop its copies beyond the factor: run on every replica, the replication
        factor is restored and extra copies go."""
        report = RepairReport()
        hosted = list(dict.fromkeys(digests))
        held = await self._inventories(hosted, report)
        whole = self._remove_extras and len(held) == len(self._placement.servers)
        for digest in hosted:
            report.checked += 1
            holders = self._live_holders(digest, held)
            here = str(digest) in held[self.self_server]
            if self.self_server in holders and not here:
                await self._restore(digest, held, report)
            elif whole and here and self.self_server not in holders:
                await self._drop_extra(digest, holders, held, report)
        if report.restored or report.missing or report.removed:
            log.info("hosted repair: %s", report.as_dict())
        return report

    async def _inventories(self, hosted: list[Digest], report: RepairReport) -> dict[str, set[str]]:
        """Each answering replica's hosted copies (this one's from its own disk)."""
        own = {str(d) for d in hosted if await self._store.stat(d) is not None}
        held = {self.self_server: own}
        for server in self._placement.servers:
            if server == self.self_server:
                continue
            report.peer_requests += 1
            try:
                held[server] = await self._peers.inventory(
                    server, inventory_url(self._placement.url(server))
                )
            except PeerUnavailable as exc:
                # Not marked down: a pass at start-up runs before the peers are up, and
                # pushes must not skip them for peer_down_for because of it.
                log.warning("replica %s gives no inventory: %s", server, exc.reason)
                continue
            self._placement.mark_up(server)
        return held

    def _live_holders(self, digest: Digest, held: dict[str, set[str]]) -> list[str]:
        """The first ``factor`` replicas of the walk among those that answered."""
        return [s for s in self._walk(digest) if s in held][: self.factor]

    async def _restore(
        self, digest: Digest, held: dict[str, set[str]], report: RepairReport
    ) -> None:
        sources = [s for s in held if s != self.self_server and str(digest) in held[s]]
        if sources:
            report.peer_requests += 1
        if sources and await self.fetch(digest, among=sources):
            report.restored += 1
        else:
            report.missing.append(str(digest))

    async def _drop_extra(
        self, digest: Digest, holders: list[str], held: dict[str, set[str]], report: RepairReport
    ) -> None:
        """Remove this replica's copy of ``digest`` if each holder proves it holds one."""
        if len(holders) < self.factor or not all(str(digest) in held[s] for s in holders):
            return  # the holders restore theirs first (in their own passes)
        for server in holders:
            report.peer_requests += 1
            if not await self._proven(server, digest):
                return
        if await self._store.delete(digest):
            report.removed += 1
            log.info("removed the extra copy of %s (held by %s)", digest, ", ".join(holders))
            if self._audit is not None:
                self._audit.write(
                    "tier_extra_copy_removed",
                    digest=str(digest),
                    replica=self.self_server,
                    holders=holders,
                )

    async def _proven(self, server: str, digest: Digest) -> bool:
        """Whether ``server`` proves it holds the same content as this replica's copy."""
        nonce = self._nonce(NONCE_BYTES)
        expected = await content_proof(self._store, digest, nonce)
        if expected is None:
            return False
        url = proof_url(self._placement.url(server), digest, nonce)
        try:
            answer = await self._peers.proof(server, url)
        except PeerUnavailable as exc:
            log.warning("replica %s gives no proof of %s: %s", server, digest, exc.reason)
            return False
        if answer != expected:
            log.warning("replica %s's proof of %s does not match: its copy is kept", server, digest)
            return False
        return True


class HostedDigests(Protocol):
    """Lists the digests of every hosted link (blobs and manifests) in the shared metadata."""

    def __call__(self) -> Iterable[Digest]:
        """Every hosted link's digest (repeats allowed)."""
        ...
