"""Peer requests are served only with a valid, unexpired signature of that exact request."""

from __future__ import annotations

import pytest

from mirror.clock import ManualClock
from mirror.tier.signing import LIFETIME, PeerSigner

SECRET = b"0123456789abcdef0123456789abcdef"
PATH = "/_tier/blobs/sha256:ab?upstream=docker.io&repo=library%2Falpine"


def test_a_signed_request_names_its_sender() -> None:
    signer = PeerSigner(SECRET, ManualClock())
    value = signer.sign("GET", PATH, "127.0.0.1:5001")
    assert signer.verify("GET", PATH, value) == "127.0.0.1:5001"


@pytest.mark.parametrize(
    ("method", "path"),
    [("HEAD", PATH), ("GET", PATH.replace("docker.io", "evil.example")), ("GET", PATH + "&x=1")],
    ids=["other-method", "other-upstream", "extra-query"],
)
def test_a_signature_does_not_cover_another_request(method: str, path: str) -> None:
    signer = PeerSigner(SECRET, ManualClock())
    assert signer.verify(method, path, signer.sign("GET", PATH, "127.0.0.1:5001")) is None


def test_another_secret_a_forged_sender_garbage_or_nothing_is_refused() -> None:
    clock = ManualClock()
    value = PeerSigner(b"another secret of 32 bytes......", clock).sign("GET", PATH, "a:1")
    signer = PeerSigner(SECRET, clock)
    good = signer.sign("GET", PATH, "a:1")
    expires, _, mac = good.split(".", 2)[0], None, good.rsplit(".", 1)[1]
    for bad in (value, f"{expires}.b:1.{mac}", "x.y.z", "", None):
        assert signer.verify("GET", PATH, bad) is None


def test_a_signature_expires() -> None:
    clock = ManualClock()
    signer = PeerSigner(SECRET, clock)
    value = signer.sign("GET", PATH, "a:1")
    clock.advance(LIFETIME + 1)
    assert signer.verify("GET", PATH, value) is None


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        PeerSigner(b"short", ManualClock())
