"""The on-disk format of an encrypted object: a fixed header, then AEAD-sealed chunks.

::

    offset 0    prelude (32 bytes): magic "\\x89MIRENC\\n", format version u16, cipher u8,
                reserved u8, chunk size u32, plaintext size u64, 8 reserved bytes
    offset 32   key slot 0 (128 bytes) \\ each: generation u32, KEK id length u8, KEK id (32),
    offset 160  key slot 1 (128 bytes) /  wrap nonce (12), wrapped data key (32 + 16 tag)
    offset 512  chunk 0: ciphertext of chunk_size bytes + 16-byte tag, then chunk 1, ...
                the last chunk holds 0..chunk_size bytes (an empty object has one empty chunk)

A fresh random data key per object seals every chunk; the nonce of chunk ``i`` is ``i`` (each
key seals each index exactly once) and its associated data binds ``i`` and whether it is the
last chunk (format version 1 also bound the object digest), so truncation and reordering fail
the tag check; chunks of another object are under another data key. Version 2 leaves the digest
out of the chunks so that an upload can be sealed before its digest is known (a pushed blob is
written once, in this format, and installed by rename); the digest is still bound through the
key wrap, so a file moved to another digest's path does not open. Both versions are read; new
objects are version 2. The data key is wrapped with AES-256-GCM under a KEK; the wrap's
associated data binds the prelude (so chunk size and plaintext size are authenticated too), the
digest, the slot generation and the KEK id. Two slots let a key rotation rewrite one while the
other stays valid, so a torn header write never loses the object.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from mirror.crypto.keys import Kek
from mirror.errors import CorruptObject

MAGIC = b"\x89MIRENC\n"
VERSION = 2
# The versions a reader accepts (1: chunks bound to the digest too).
VERSIONS = (1, 2)
HEADER_SIZE = 512
TAG_SIZE = 16
DATA_KEY_SIZE = 32
NONCE_SIZE = 12
AES_256_GCM = 1
CHACHA20_POLY1305 = 2
CIPHERS = {"aes-256-gcm": AES_256_GCM, "chacha20-poly1305": CHACHA20_POLY1305}

_PRELUDE = struct.Struct(">8sHBBIQ8x")
_SLOT = struct.Struct(">IB32s12s48s")
_SLOT_OFFSETS = (_PRELUDE.size, _PRELUDE.size + 128)

AEAD = AESGCM | ChaCha20Poly1305


def cipher_for_cpu(cpuinfo: str) -> int:
    """AES-256-GCM when the CPU has AES instructions (x86 ``aes``, ARM ``aes`` feature),
    otherwise ChaCha20-Poly1305, which is faster in software."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features") and "aes" in value.split():
            return AES_256_GCM
    return CHACHA20_POLY1305


def aead(cipher: int, key: bytes) -> AEAD:
    """The AEAD primitive for a cipher id."""
    if cipher == AES_256_GCM:
        return AESGCM(key)
    if cipher == CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    raise ValueError(f"unknown cipher id {cipher}")


def chunk_nonce(index: int) -> bytes:
    """The nonce of chunk ``index``: unique per data key because each index is sealed once."""
    return index.to_bytes(NONCE_SIZE, "big")


def chunk_aad(digest: str, index: int, last: bool, version: int = VERSION) -> bytes:
    """What each chunk's tag authenticates besides its ciphertext (``digest`` in version 1
    only)."""
    position = struct.pack(">QB", index, last)
    if version == 1:
        return b"mirror chunk v1\0" + digest.encode() + b"\0" + position
    return b"mirror chunk v2\0" + position


def seal_chunk(
    cipher: AEAD,
    digest: str,
    index: int,
    last: bool,
    plain: bytes | memoryview,
    version: int = VERSION,
) -> bytes:
    """Encrypt one chunk (ciphertext followed by its tag)."""
    return cipher.encrypt(chunk_nonce(index), plain, chunk_aad(digest, index, last, version))


def seal_chunk_into(
    cipher: AEAD,
    digest: str,
    index: int,
    last: bool,
    plain: bytes | bytearray | memoryview,
    out: bytearray | memoryview,
) -> None:
    """``seal_chunk`` into ``out`` (``len(plain) + TAG_SIZE`` bytes): no allocation per chunk."""
    cipher.encrypt_into(chunk_nonce(index), plain, chunk_aad(digest, index, last), out)


def open_chunk(
    cipher: AEAD, digest: str, index: int, last: bool, sealed: bytes, version: int = VERSION
) -> bytes:
    """Decrypt one chunk; raises ``CorruptObject`` when the tag does not verify."""
    try:
        return cipher.decrypt(chunk_nonce(index), sealed, chunk_aad(digest, index, last, version))
    except InvalidTag:
        raise CorruptObject(digest, f"chunk {index} failed its tag check") from None


def open_chunk_into(
    cipher: AEAD,
    digest: str,
    index: int,
    last: bool,
    sealed: memoryview,
    out: memoryview,
    version: int = VERSION,
) -> None:
    """``open_chunk`` into ``out`` (``len(sealed) - TAG_SIZE`` bytes; it may be the start of
    ``sealed``: in place). Raises ``CorruptObject`` when the tag does not verify, and then
    ``out`` holds bytes that must never be used."""
    try:
        cipher.decrypt_into(
            chunk_nonce(index), sealed, chunk_aad(digest, index, last, version), out
        )
    except InvalidTag:
        raise CorruptObject(digest, f"chunk {index} failed its tag check") from None


@dataclass(frozen=True, slots=True)
class Layout:
    """Where chunks live for a given chunk size."""

    chunk_size: int

    def offset(self, index: int) -> int:
        """File offset of chunk ``index``."""
        return HEADER_SIZE + index * (self.chunk_size + TAG_SIZE)

    def chunk_count(self, plain_size: int) -> int:
        """Chunks holding ``plain_size`` bytes (at least one)."""
        return max(1, -(-plain_size // self.chunk_size))

    def file_size(self, plain_size: int) -> int:
        """Size of the committed file of an object of ``plain_size`` bytes."""
        return HEADER_SIZE + plain_size + TAG_SIZE * self.chunk_count(plain_size)


@dataclass(frozen=True, slots=True)
class KeySlot:
    """A data key wrapped by one KEK."""

    generation: int
    kek_id: str
    nonce: bytes
    wrapped: bytes

    def pack(self) -> bytes:
        """The slot's bytes in the header."""
        kek_id = self.kek_id.encode()
        return _SLOT.pack(self.generation, len(kek_id), kek_id, self.nonce, self.wrapped)


@dataclass(frozen=True, slots=True)
class Header:
    """An object's header: how it is encrypted and its (wrapped) data keys."""

    cipher: int
    chunk_size: int
    plain_size: int
    slots: tuple[KeySlot | None, KeySlot | None]
    version: int = VERSION

    @property
    def layout(self) -> Layout:
        """The chunk layout of this object."""
        return Layout(self.chunk_size)

    def prelude(self) -> bytes:
        """The header's fixed prelude: magic, version, cipher, chunk size, plaintext size."""
        return _PRELUDE.pack(MAGIC, self.version, self.cipher, 0, self.chunk_size, self.plain_size)

    def pack(self) -> bytes:
        """The header's ``HEADER_SIZE`` bytes."""
        out = bytearray(HEADER_SIZE)
        out[: _PRELUDE.size] = self.prelude()
        for offset, slot in zip(_SLOT_OFFSETS, self.slots, strict=True):
            if slot is not None:
                packed = slot.pack()
                out[offset : offset + len(packed)] = packed
        return bytes(out)

    def slot_bytes(self, index: int) -> tuple[int, bytes]:
        """Offset and bytes of slot ``index`` (for rewriting just that slot)."""
        slot = self.slots[index]
        return _SLOT_OFFSETS[index], slot.pack() if slot is not None else bytes(_SLOT.size)

    def candidates(self) -> list[tuple[int, KeySlot]]:
        """Filled slots, newest generation first."""
        filled = [(i, s) for i, s in enumerate(self.slots) if s is not None]
        return sorted(filled, key=lambda item: -item[1].generation)

    @staticmethod
    def unpack(data: bytes, digest: str) -> Header:
        """Parse a header; raises ``CorruptObject`` if it is not one this format can read."""
        if len(data) < HEADER_SIZE:
            raise CorruptObject(digest, f"header is {len(data)} bytes, expected {HEADER_SIZE}")
        magic, version, cipher, _, chunk_size, plain_size = _PRELUDE.unpack_from(data)
        if magic != MAGIC:
            raise CorruptObject(digest, "not an encrypted object (bad magic)")
        if version not in VERSIONS:
            raise CorruptObject(digest, f"unknown format version {version}")
        if cipher not in CIPHERS.values() or chunk_size < 1:
            raise CorruptObject(digest, f"bad cipher {cipher} or chunk size {chunk_size}")
        slots: list[KeySlot | None] = []
        for offset in _SLOT_OFFSETS:
            generation, id_len, kek_id, nonce, wrapped = _SLOT.unpack_from(data, offset)
            if generation == 0:
                slots.append(None)
                continue
            try:
                name = kek_id[: min(id_len, 32)].decode("ascii")
            except UnicodeDecodeError:
                name = "?"
            slots.append(KeySlot(generation, name, nonce, wrapped))
        return Header(cipher, chunk_size, plain_size, (slots[0], slots[1]), version)


def _wrap_aad(header: Header, digest: str, generation: int, kek_id: str) -> bytes:
    return (
        header.prelude() + digest.encode() + b"\0" + struct.pack(">I", generation) + kek_id.encode()
    )


def wrap_key(
    kek: Kek, data_key: bytes, header: Header, digest: str, generation: int, nonce: bytes
) -> KeySlot:
    """Wrap ``data_key`` under ``kek`` for an object with ``header``'s prelude."""
    aad = _wrap_aad(header, digest, generation, kek.id)
    return KeySlot(generation, kek.id, nonce, AESGCM(kek.key).encrypt(nonce, data_key, aad))


def unwrap_key(kek: Kek, slot: KeySlot, header: Header, digest: str) -> bytes | None:
    """The data key in ``slot``, or ``None`` when it does not authenticate under ``kek``."""
    aad = _wrap_aad(header, digest, slot.generation, kek.id)
    try:
        return AESGCM(kek.key).decrypt(slot.nonce, slot.wrapped, aad)
    except InvalidTag:
        return None
