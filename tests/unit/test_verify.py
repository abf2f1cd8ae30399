"""Verification wraps the stream: hash and size-check as bytes pass, fail at the end."""

from __future__ import annotations

import pytest

from mirror.errors import DigestMismatch
from mirror.oci.digest import Digest
from mirror.verify import Verifier

CONTENT = b"the quick brown fox jumps over the lazy dog"
DIGEST = Digest.of(CONTENT)


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def feed(verifier: Verifier, data: bytes, chunk_size: int = 5) -> None:
    for chunk in chunks(data, chunk_size):
        verifier.update(chunk)


@pytest.mark.parametrize(
    "size, chunk_size",
    [
        pytest.param(len(CONTENT), 5, id="known-size"),
        pytest.param(None, 5, id="unknown-size"),
        pytest.param(len(CONTENT), 1, id="byte-at-a-time"),
        pytest.param(len(CONTENT), len(CONTENT), id="one-chunk"),
    ],
)
def test_right_content_verifies(size: int | None, chunk_size: int) -> None:
    verifier = Verifier(DIGEST, size)
    feed(verifier, CONTENT, chunk_size)

    verifier.verify()
    assert verifier.count == len(CONTENT)


def test_memoryview_chunks_are_accepted() -> None:
    verifier = Verifier(DIGEST, len(CONTENT))
    view = memoryview(CONTENT)
    verifier.update(view[:10])
    verifier.update(view[10:])

    verifier.verify()


def test_sha512_digest_verifies() -> None:
    verifier = Verifier(Digest.of(CONTENT, "sha512"), len(CONTENT))
    feed(verifier, CONTENT)

    verifier.verify()


@pytest.mark.parametrize("size", [len(CONTENT), None], ids=["known-size", "unknown-size"])
def test_wrong_content_of_the_same_size_fails_at_verify(size: int | None) -> None:
    wrong = CONTENT.replace(b"dog", b"cat")
    verifier = Verifier(DIGEST, size)
    feed(verifier, wrong)

    with pytest.raises(DigestMismatch) as caught:
        verifier.verify()

    assert caught.value.expected == str(DIGEST)
    assert caught.value.actual == str(Digest.of(wrong))
    assert caught.value.actual_size == len(wrong)


@pytest.mark.parametrize("size", [len(CONTENT), None], ids=["known-size", "unknown-size"])
def test_short_content_fails_at_verify(size: int | None) -> None:
    short = CONTENT[:-1]
    verifier = Verifier(DIGEST, size)
    feed(verifier, short)

    with pytest.raises(DigestMismatch) as caught:
        verifier.verify()

    assert caught.value.actual == str(Digest.of(short))
    assert (caught.value.expected_size, caught.value.actual_size) == (size, len(short))


def test_too_long_content_fails_early_at_update() -> None:
    verifier = Verifier(DIGEST, len(CONTENT))
    verifier.update(CONTENT[:-3])

    with pytest.raises(DigestMismatch) as caught:
        verifier.update(CONTENT[-3:] + b"!!!!")

    assert caught.value.expected == str(DIGEST)
    assert caught.value.expected_size == len(CONTENT)
    assert caught.value.actual_size == len(CONTENT) + 4


def test_one_byte_over_the_size_fails_at_update() -> None:
    verifier = Verifier(DIGEST, len(CONTENT))
    feed(verifier, CONTENT)

    with pytest.raises(DigestMismatch):
        verifier.update(b"x")


def test_too_long_content_of_unknown_size_fails_at_verify() -> None:
    verifier = Verifier(DIGEST)
    feed(verifier, CONTENT + b"trailing")

    with pytest.raises(DigestMismatch) as caught:
        verifier.verify()

    assert caught.value.actual_size == len(CONTENT) + len(b"trailing")


def test_right_content_with_a_wrong_declared_size_fails() -> None:
    verifier = Verifier(DIGEST, len(CONTENT) + 1)
    feed(verifier, CONTENT)

    with pytest.raises(DigestMismatch) as caught:
        verifier.verify()

    assert caught.value.actual == str(DIGEST)
    assert (caught.value.expected_size, caught.value.actual_size) == (
        len(CONTENT) + 1,
        len(CONTENT),
    )


def test_empty_content_verifies_against_the_empty_digest() -> None:
    Verifier(Digest.of(b""), 0).verify()
