"""What an export reads, whatever it reads from (the mirror over HTTP, or its cache
directly): verified manifests, blobs in whole pieces, and the failure naming what was asked."""

from __future__ import annotations

from dataclasses import dataclass

from mirror.oci.digest import Digest

# What a blob is read in: whole pieces this large (not whatever the socket had), so the
# per-chunk costs (a thread hand-off, a hash call, a write) are paid once per 4 MiB.
CHUNK = 4 * 1024 * 1024


class FetchFailed(Exception):
    """The mirror did not give what was asked for; ``what`` names it, ``reason`` says why."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest body that hashed to ``digest``."""

    digest: Digest
    media_type: str
    body: bytes
