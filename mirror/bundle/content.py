"""What an image of a bundle is made of, once read and verified, and the refusal of one."""

from __future__ import annotations

from dataclasses import dataclass, field

from mirror.oci.digest import Digest


class Refused(Exception):
    """An image that cannot be imported; ``reason`` says why (naming the digest if one)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BundleManifest:
    """A verified manifest body of the bundle."""

    digest: Digest
    media_type: str
    body: bytes
    subject: str | None


@dataclass
class ImageContent:
    """What one image of the bundle takes, children before parents."""

    root: BundleManifest
    manifests: list[BundleManifest] = field(default_factory=list)
    blobs: dict[Digest, int] = field(default_factory=dict)
    referrers: list[BundleManifest] = field(default_factory=list)
    missing_children: int = 0
