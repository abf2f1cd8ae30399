"""Verification wraps the stream: hash and size-check as bytes pass, fail at the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mirror.errors import DigestMismatch
from mirror.oci.digest import Digest
from mirror.verify import Verifier, hold_last, verified

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


# The stream wrappers ------------------------------------------------------------------------


async def stream_of(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def passed(stream: AsyncIterator[bytes], into: list[bytes]) -> None:
    async for piece in stream:
        into.append(piece)


@pytest.mark.parametrize("in_thread", [False, True], ids=["inline", "in-thread"])
async def test_verified_stream_passes_the_bytes_unchanged(in_thread: bool) -> None:
    verifier = Verifier(DIGEST, len(CONTENT))
    received: list[bytes] = []

    await passed(verified(stream_of(chunks(CONTENT, 5)), verifier, in_thread=in_thread), received)

    assert received == chunks(CONTENT, 5)
    assert verifier.count == len(CONTENT)


@pytest.mark.parametrize("in_thread", [False, True], ids=["inline", "in-thread"])
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(CONTENT.replace(b"dog", b"cat"), id="wrong-bytes"),
        pytest.param(CONTENT[:-1], id="short"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_verified_stream_fails_at_its_end_after_passing_every_byte(
    content: bytes, in_thread: bool
) -> None:
    received: list[bytes] = []

    with pytest.raises(DigestMismatch) as caught:
        stream = verified(
            stream_of(chunks(content, 5)), Verifier(DIGEST, len(CONTENT)), in_thread=in_thread
        )
        await passed(stream, received)

    assert b"".join(received) == content
    assert caught.value.expected == str(DIGEST)
    assert caught.value.actual_size == len(content)


async def test_verified_stream_fails_before_passing_the_chunk_that_is_too_long() -> None:
    received: list[bytes] = []
    content = CONTENT + b"!!!!"

    with pytest.raises(DigestMismatch) as caught:
        await passed(
            verified(stream_of(chunks(content, 5)), Verifier(DIGEST, len(CONTENT))), received
        )

    assert b"".join(received) == content[: len(CONTENT) // 5 * 5]
    assert caught.value.actual == "(too long)"


async def test_verified_empty_stream_verifies_against_the_empty_digest() -> None:
    received: list[bytes] = []

    await passed(verified(stream_of([]), Verifier(Digest.of(b""), 0)), received)

    assert received == []


async def test_in_thread_hash_has_absorbed_every_yielded_chunk_when_the_source_breaks() -> None:
    async def breaking() -> AsyncIterator[bytes]:
        yield CONTENT[:10]
        yield CONTENT[10:20]
        raise ConnectionResetError("transfer broke")

    verifier = Verifier(DIGEST, len(CONTENT))
    received: list[bytes] = []

    with pytest.raises(ConnectionResetError):
        await passed(verified(breaking(), verifier, in_thread=True), received)

    assert verifier.count == sum(map(len, received)) == 20


@pytest.mark.parametrize("length", [len(CONTENT), 12], ids=["whole", "range"])
async def test_hold_last_releases_the_completing_piece_once_the_stream_verified(
    length: int,
) -> None:
    """A range of a verified whole: pieces pass at once, the one completing it at the end."""
    received: list[bytes] = []

    async def range_of(whole: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in whole:
            part = chunk[: max(length - sent, 0)]
            sent += len(chunk)
            if part:
                yield part

    stream = hold_last(range_of(verified(stream_of(chunks(CONTENT, 5)), Verifier(DIGEST))), length)
    await passed(stream, received)

    assert b"".join(received) == CONTENT[:length]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(CONTENT.replace(b"dog", b"cat"), id="wrong-bytes"),
        pytest.param(CONTENT + b"!!!!", id="too-long"),
    ],
)
async def test_hold_last_never_releases_the_final_piece_on_mismatch(content: bytes) -> None:
    received: list[bytes] = []
    whole = verified(stream_of(chunks(content, 5)), Verifier(DIGEST, len(CONTENT)))

    with pytest.raises(DigestMismatch):
        await passed(hold_last(whole, len(CONTENT)), received)

    assert b"".join(received) == CONTENT[: (len(CONTENT) - 1) // 5 * 5]
    assert len(b"".join(received)) < len(CONTENT)


async def test_hold_last_waits_for_the_verdict_before_the_final_piece() -> None:
    verdict = asyncio.get_running_loop().create_future()
    received: list[bytes] = []

    async def wait_verdict() -> None:
        await verdict

    reading = asyncio.create_task(
        passed(hold_last(stream_of(chunks(CONTENT, 5)), len(CONTENT), wait_verdict), received)
    )
    await asyncio.sleep(0.01)
    assert b"".join(received) == CONTENT[: (len(CONTENT) - 1) // 5 * 5]

    verdict.set_exception(DigestMismatch(str(DIGEST), "(fill failed)"))
    with pytest.raises(DigestMismatch):
        await reading
    assert len(b"".join(received)) < len(CONTENT)


async def test_hold_last_releases_after_a_verdict_that_passes() -> None:
    async def passes() -> None:
        return None

    received: list[bytes] = []

    await passed(hold_last(stream_of(chunks(CONTENT, 5)), len(CONTENT), passes), received)

    assert b"".join(received) == CONTENT


async def test_hold_last_of_nothing_yields_nothing_and_asks_no_verdict() -> None:
    async def never() -> None:
        raise AssertionError("no piece to release, no verdict to wait for")

    received: list[bytes] = []

    await passed(hold_last(stream_of([]), 0, never), received)

    assert received == []
