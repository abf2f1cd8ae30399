"""Leases: a blob is in use while any hold on it is unreleased."""

from __future__ import annotations

from mirror.oci.digest import Digest
from mirror.pullthrough.leases import Leases

BLOB = Digest.of(b"a layer")
OTHER = Digest.of(b"another layer")


def test_a_held_blob_is_in_use_until_released() -> None:
    leases = Leases()
    release = leases.hold(BLOB)

    assert leases.held(BLOB)
    assert not leases.held(OTHER)

    release()

    assert not leases.held(BLOB)


def test_a_blob_stays_in_use_while_any_of_its_holds_is_unreleased() -> None:
    leases = Leases()
    serving = leases.hold(BLOB)
    filling = leases.hold(BLOB)

    serving()
    assert leases.held(BLOB)
    filling()
    assert not leases.held(BLOB)


def test_releasing_twice_releases_once() -> None:
    leases = Leases()
    first = leases.hold(BLOB)
    second = leases.hold(BLOB)

    first()
    first()

    assert leases.held(BLOB)
    second()
    assert not leases.held(BLOB)
