"""Staged objects of the encrypted store: an upload sealed chunk by chunk, in format v2 of
``mirror.crypto.envelope``, as it arrives; at the final ``PUT`` the last chunk is sealed, the
header (the data key wrapped for the digest) written, and the file renamed into place.

Session files besides ``object`` (the sealed chunks at their final offsets, the header's 512
bytes left blank): ``key``, the upload's data key wrapped by the current KEK (bound to the
session id), and ``tail``, the bytes of the chunk not yet full, sealed under the data key with
a random nonce whose first byte is ``0xff`` (chunk nonces are the chunk index, so the two
never meet). No plaintext byte of the upload ever reaches the disk.

A chunk index is sealed once per data key. So a ``rollback`` that would un-seal a chunk is
refused (the session is discarded instead), and a resume after a crash keeps the chunks that
were sealed after the last ``flush`` (they authenticate: they are bytes the client sent).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mirror.blobstore.install import install
from mirror.blobstore.sealed import pwrite_all
from mirror.blobstore.staging import HASH, OBJECT, check
from mirror.crypto.envelope import (
    DATA_KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    Header,
    Layout,
    aead,
    open_chunk,
    seal_chunk,
    seal_chunk_into,
    wrap_key,
)
from mirror.crypto.keys import Kek
from mirror.errors import CorruptObject
from mirror.oci.digest import Digest

KEY = "key"
TAIL = "tail"
_COUNT = struct.Struct(">Q")


class SealedStaged:
    """An upload being sealed into ``<directory>/object``."""

    def __init__(
        self,
        directory: Path,
        data_key: bytes,
        *,
        cipher: int,
        chunk_size: int,
        random_bytes: Callable[[int], bytes],
        executor: Executor | None,
        current_kek: Callable[[], Kek],
        final: Callable[[Digest], Path],
    ) -> None:
        self._current_kek = current_kek
        self._final = final
        self._directory = directory
        self._path = directory / OBJECT
        self._data_key = data_key
        self._cipher_id = cipher
        self._cipher = aead(cipher, data_key)
        self._layout = Layout(chunk_size)
        self._random_bytes = random_bytes
        self._executor = executor
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        self._sealed = 0
        # The chunk being filled (its first ``_fill`` bytes: the tail) and the sealed chunk's
        # buffer: each byte is copied once into the first and sealed into the second.
        self._buffer = bytearray(chunk_size)
        self._fill = 0
        self._out = bytearray(chunk_size + TAG_SIZE)
        self._hash = hashlib.new(HASH)
        self._mark: tuple[int, bytes, Any] = (0, b"", self._hash.copy())

    # Session files ---------------------------------------------------------------------------

    @staticmethod
    def new_key(directory: Path, kek: Kek, cipher: int, chunk_size: int, key: bytes) -> None:
        """Write the session's ``key`` file: ``key`` wrapped by ``kek``."""
        nonce = os.urandom(NONCE_SIZE)
        aad = _key_aad(directory, kek.id, cipher, chunk_size)
        record = {
            "kek": kek.id,
            "cipher": cipher,
            "chunk_size": chunk_size,
            "nonce": nonce.hex(),
            "wrapped": AESGCM(kek.key).encrypt(nonce, key, aad).hex(),
        }
        _replace(directory / KEY, json.dumps(record).encode())

    @staticmethod
    def read_key(directory: Path, find: Callable[[str], Kek | None]) -> tuple[bytes, int, int]:
        """The data key, cipher and chunk size of a session; ``CorruptObject`` if unusable."""
        try:
            record = json.loads((directory / KEY).read_text())
            kek = find(str(record["kek"]))
            cipher, chunk_size = int(record["cipher"]), int(record["chunk_size"])
            if kek is None:
                raise CorruptObject(directory.name, f"KEK {record['kek']} is not loaded")
            aad = _key_aad(directory, kek.id, cipher, chunk_size)
            nonce, wrapped = bytes.fromhex(record["nonce"]), bytes.fromhex(record["wrapped"])
            return AESGCM(kek.key).decrypt(nonce, wrapped, aad), cipher, chunk_size
        except (OSError, ValueError, KeyError, TypeError, InvalidTag):
            raise CorruptObject(directory.name, "the upload's key file is unusable") from None

    def resume(self) -> None:
        """Pick up where the last ``flush`` (or a chunk sealed after it) left off, and hash
        what is staged (blocking: run it off the event loop)."""
        try:
            record = (self._directory / TAIL).read_bytes()
        except FileNotFoundError:
            record = b""
        if record:
            self._sealed, tail = self._open_tail(record)
            self._set_tail(tail)
        extra = self._sealed_after_flush()
        if extra:
            self._sealed = self._sealed + extra
            self._set_tail(b"")
        os.ftruncate(self._fd, self._layout.offset(self._sealed))
        for index in range(self._sealed):
            self._hash.update(self._read_chunk(index))
        self._hash.update(self._tail_view())
        self.mark()

    def _open_tail(self, record: bytes) -> tuple[int, bytes]:
        sealed = _COUNT.unpack_from(record)[0]
        nonce, body = record[_COUNT.size : _COUNT.size + NONCE_SIZE], record[20:]
        try:
            tail = self._cipher.decrypt(nonce, body, self._tail_aad(sealed))
        except InvalidTag:
            raise CorruptObject(self._directory.name, "the upload's tail is corrupt") from None
        return sealed, tail

    def _sealed_after_flush(self) -> int:
        size = os.fstat(self._fd).st_size
        step = self._layout.chunk_size + TAG_SIZE
        extra = 0
        while self._layout.offset(self._sealed + extra) + step <= size:
            try:
                self._read_chunk(self._sealed + extra)
            except CorruptObject:
                break
            extra += 1
        return extra

    def _read_chunk(self, index: int) -> bytes:
        length = self._layout.chunk_size + TAG_SIZE
        sealed = os.pread(self._fd, length, self._layout.offset(index))
        return open_chunk(self._cipher, self._directory.name, index, False, sealed)

    def _tail_aad(self, sealed: int) -> bytes:
        return b"mirror staged tail v1\0" + self._directory.name.encode() + _COUNT.pack(sealed)

    # Staged ----------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The plaintext bytes received so far."""
        return self._sealed * self._layout.chunk_size + self._fill

    def _tail_view(self) -> memoryview:
        return memoryview(self._buffer)[: self._fill]

    def _set_tail(self, tail: bytes) -> None:
        self._buffer[: len(tail)] = tail
        self._fill = len(tail)

    async def write(self, *pieces: bytes) -> None:
        """Hash ``pieces`` and seal every chunk they complete (a chunk is sealed once a byte
        of the next one arrived: the last one is sealed, flagged last, at install), in the
        executor; the object's state changes only there."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, pieces)

    def _write(self, pieces: tuple[bytes, ...]) -> None:
        size = self._layout.chunk_size
        for piece in pieces:
            self._hash.update(piece)
            view = memoryview(piece)
            while view:
                if self._fill == size:
                    self._seal_full()
                take = min(size - self._fill, len(view))
                self._buffer[self._fill : self._fill + take] = view[:take]
                self._fill += take
                view = view[take:]

    def _seal_full(self) -> None:
        seal_chunk_into(self._cipher, "", self._sealed, False, self._buffer, self._out)
        pwrite_all(self._fd, self._out, self._layout.offset(self._sealed))
        self._sealed += 1
        self._fill = 0

    def mark(self) -> None:
        """Remember the current end (sealed chunks, tail, hash)."""
        self._mark = (self._sealed, bytes(self._tail_view()), self._hash.copy())

    def rollback(self) -> bool:
        """Back to the mark (the tail record rewritten), unless a chunk was sealed since:
        a chunk index is never sealed twice under one key."""
        sealed, tail, hasher = self._mark
        if sealed != self._sealed:
            return False
        self._set_tail(tail)
        self._hash = hasher.copy()
        self._save_tail()
        return True

    async def flush(self) -> None:
        """fsync the chunks, then atomically replace the sealed tail record."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._save_tail)

    def _save_tail(self) -> None:
        nonce = b"\xff" + self._random_bytes(NONCE_SIZE - 1)
        body = self._cipher.encrypt(nonce, self._tail_view(), self._tail_aad(self._sealed))
        os.fsync(self._fd)
        _replace(self._directory / TAIL, _COUNT.pack(self._sealed) + nonce + body)

    def feed(self, hasher: Any) -> None:
        """Hash every staged byte into ``hasher`` (for a digest of another algorithm)."""
        for index in range(self._sealed):
            hasher.update(self._read_chunk(index))
        hasher.update(self._tail_view())

    def verify(self, digest: Digest) -> None:
        """Raise ``DigestMismatch`` unless the staged bytes hash to ``digest``."""
        check(digest, self._hash, self.size, self.feed)

    async def install(self, digest: Digest) -> None:
        """Verify, seal the last chunk, write the header (the data key wrapped for ``digest``
        under the current KEK) and rename into the store."""
        self.verify(digest)
        loop = asyncio.get_running_loop()
        kek = await loop.run_in_executor(self._executor, self._current_kek)
        final = self._final(digest)
        await loop.run_in_executor(self._executor, self._install, str(digest), kek, final)

    def _install(self, digest: str, kek: Kek, final: Path) -> None:
        last = seal_chunk(self._cipher, digest, self._sealed, True, self._tail_view())
        pwrite_all(self._fd, last, self._layout.offset(self._sealed))
        header = Header(self._cipher_id, self._layout.chunk_size, self.size, (None, None))
        nonce = self._random_bytes(NONCE_SIZE)
        slot = wrap_key(kek, self._data_key, header, digest, 1, nonce)
        pwrite_all(self._fd, replace(header, slots=(slot, None)).pack(), 0)
        fd, self._fd = self._fd, -1
        install(fd, self._path, final)

    def close(self) -> None:
        """Close the object file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def new_data_key(random_bytes: Callable[[int], bytes]) -> bytes:
    """A fresh data key for one upload."""
    return random_bytes(DATA_KEY_SIZE)


def _key_aad(directory: Path, kek_id: str, cipher: int, chunk_size: int) -> bytes:
    head = b"mirror staged key v1\0" + directory.name.encode() + b"\0" + kek_id.encode()
    return head + struct.pack(">BI", cipher, chunk_size)


def _replace(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        pwrite_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
