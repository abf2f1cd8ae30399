"""The encrypted object format: cipher choice, header, chunk sealing and key wrapping."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mirror.crypto.envelope import (
    AES_256_GCM,
    CHACHA20_POLY1305,
    HEADER_SIZE,
    TAG_SIZE,
    Header,
    Layout,
    aead,
    cipher_for_cpu,
    open_chunk,
    seal_chunk,
    unwrap_key,
    wrap_key,
)
from mirror.crypto.keys import Kek
from mirror.errors import CorruptObject

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
KEK = Kek("k1", bytes(range(32)))


@pytest.mark.parametrize(
    ("cpuinfo", "cipher"),
    [
        pytest.param("flags\t\t: fpu vme sse2 aes avx2\n", AES_256_GCM, id="x86-aes-ni"),
        pytest.param("flags\t\t: fpu vme sse2 avx2\n", CHACHA20_POLY1305, id="x86-without"),
        pytest.param("Features\t: fp asimd aes pmull sha1\n", AES_256_GCM, id="arm-aes"),
        pytest.param("Features\t: fp asimd\n", CHACHA20_POLY1305, id="arm-without"),
        pytest.param("flags : aesni_like\n", CHACHA20_POLY1305, id="substring-is-not-aes"),
        pytest.param("", CHACHA20_POLY1305, id="unknown-cpu"),
    ],
)
def test_cipher_follows_the_cpu(cpuinfo: str, cipher: int) -> None:
    assert cipher_for_cpu(cpuinfo) == cipher


def test_unknown_cipher_id_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown cipher"):
        aead(9, bytes(32))


@pytest.mark.parametrize(
    ("plain_size", "chunks", "file_size"),
    [
        pytest.param(0, 1, HEADER_SIZE + TAG_SIZE, id="empty-has-one-chunk"),
        pytest.param(1, 1, HEADER_SIZE + 1 + TAG_SIZE, id="one-byte"),
        pytest.param(4096, 1, HEADER_SIZE + 4096 + TAG_SIZE, id="exactly-one-chunk"),
        pytest.param(4097, 2, HEADER_SIZE + 4097 + 2 * TAG_SIZE, id="one-byte-over"),
    ],
)
def test_layout(plain_size: int, chunks: int, file_size: int) -> None:
    layout = Layout(4096)

    assert layout.chunk_count(plain_size) == chunks
    assert layout.file_size(plain_size) == file_size
    assert layout.offset(1) == HEADER_SIZE + 4096 + TAG_SIZE


@pytest.mark.parametrize("cipher_id", [AES_256_GCM, CHACHA20_POLY1305])
def test_chunk_opens_only_with_its_index_and_last_flag(cipher_id: int) -> None:
    cipher = aead(cipher_id, bytes(32))
    sealed = seal_chunk(cipher, DIGEST, 3, False, b"chunk three")

    assert open_chunk(cipher, DIGEST, 3, False, sealed) == b"chunk three"
    # Version 2 chunks do not bind the digest (an upload is sealed before it is known).
    assert open_chunk(cipher, OTHER, 3, False, sealed) == b"chunk three"
    assert len(sealed) == len(b"chunk three") + TAG_SIZE
    for index, last in [(4, False), (3, True)]:
        with pytest.raises(CorruptObject, match="chunk"):
            open_chunk(cipher, DIGEST, index, last, sealed)
    flipped = bytes([sealed[0] ^ 1]) + sealed[1:]
    with pytest.raises(CorruptObject, match="tag check"):
        open_chunk(cipher, DIGEST, 3, False, flipped)


def test_version_1_chunks_are_still_read_and_bound_to_their_digest() -> None:
    cipher = aead(AES_256_GCM, bytes(32))
    sealed = seal_chunk(cipher, DIGEST, 3, False, b"old", version=1)

    assert open_chunk(cipher, DIGEST, 3, False, sealed, version=1) == b"old"
    for digest, version in [(OTHER, 1), (DIGEST, 2)]:
        with pytest.raises(CorruptObject, match="tag check"):
            open_chunk(cipher, digest, 3, False, sealed, version=version)
    old = Header(AES_256_GCM, 4096, 10, (None, None), version=1)
    assert Header.unpack(old.pack(), DIGEST).version == 1


def header_with_slot(plain_size: int = 12345) -> tuple[Header, bytes]:
    header = Header(AES_256_GCM, 4096, plain_size, (None, None))
    data_key = bytes(range(100, 132))
    slot = wrap_key(KEK, data_key, header, DIGEST, 1, b"\x01" * 12)
    return replace(header, slots=(slot, None)), data_key


def test_header_round_trips_and_unwraps() -> None:
    header, data_key = header_with_slot()

    parsed = Header.unpack(header.pack(), DIGEST)

    assert parsed == header
    assert len(header.pack()) == HEADER_SIZE
    ((index, slot),) = parsed.candidates()
    assert index == 0 and slot.kek_id == "k1"
    assert unwrap_key(KEK, slot, parsed, DIGEST) == data_key


def test_the_wrap_binds_digest_sizes_and_kek() -> None:
    header, _ = header_with_slot()
    slot = header.slots[0]
    assert slot is not None

    assert unwrap_key(KEK, slot, header, OTHER) is None
    assert unwrap_key(KEK, slot, replace(header, plain_size=1), DIGEST) is None
    assert unwrap_key(KEK, slot, replace(header, chunk_size=8192), DIGEST) is None
    assert unwrap_key(Kek("k1", bytes(32)), slot, header, DIGEST) is None
    assert unwrap_key(KEK, replace(slot, generation=2), header, DIGEST) is None


def test_candidates_are_newest_first() -> None:
    header, _ = header_with_slot()
    first = header.slots[0]
    assert first is not None
    newer = replace(first, generation=5, kek_id="k2")

    assert [s.kek_id for _, s in replace(header, slots=(first, newer)).candidates()] == [
        "k2",
        "k1",
    ]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda b: b[:100], "header is 100 bytes", id="short"),
        pytest.param(lambda b: b"PLAINTXT" + b[8:], "bad magic", id="magic"),
        pytest.param(lambda b: b[:8] + b"\x00\x07" + b[10:], "version 7", id="version"),
        pytest.param(lambda b: b[:10] + b"\x09" + b[11:], "bad cipher", id="cipher"),
        pytest.param(lambda b: b[:12] + bytes(4) + b[16:], "chunk size 0", id="chunk-size"),
    ],
)
def test_unreadable_headers_are_corrupt(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    header, _ = header_with_slot()

    with pytest.raises(CorruptObject, match=message):
        Header.unpack(mutate(header.pack()), DIGEST)
