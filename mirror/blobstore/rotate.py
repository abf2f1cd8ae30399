"""Key rotation on a live cache: only headers are rewritten, never chunk bodies.

``rewrap`` wraps an object's data key under the new KEK into the header slot that does not hold
the newest wrap, so the other slot stays valid throughout (a torn write or a server that has not
loaded the new KEK yet still reads the object). ``clear`` then removes a retired KEK's wraps.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.sealed import pwrite_all
from mirror.crypto.envelope import HEADER_SIZE, NONCE_SIZE, Header, KeySlot, wrap_key
from mirror.crypto.keys import Kek
from mirror.oci.digest import Digest


def _read_header(fd: int, digest: Digest) -> Header:
    return Header.unpack(os.pread(fd, HEADER_SIZE, 0), str(digest))


def _write_slot(fd: int, header: Header, index: int) -> None:
    offset, data = header.slot_bytes(index)
    pwrite_all(fd, data, offset)
    os.fsync(fd)


def newest_kek(store: EncryptedBlobStore, digest: Digest) -> str | None:
    """The KEK id of the object's newest key slot (``None`` if it is gone)."""
    try:
        with open(store.path(digest), "rb") as file:
            header = _read_header(file.fileno(), digest)
    except FileNotFoundError:
        return None
    candidates = header.candidates()
    return candidates[0][1].kek_id if candidates else ""


def rewrap(
    store: EncryptedBlobStore, digest: Digest, target: Kek, random_bytes: Callable[[int], bytes]
) -> bool:
    """Wrap the object's data key under ``target`` unless its newest slot already is; returns
    whether it wrote. Raises ``CorruptObject`` for an object whose key does not unwrap, and
    ``FileNotFoundError`` if the object went away."""
    fd = os.open(store.path(digest), os.O_RDWR)
    try:
        header = _read_header(fd, digest)
        candidates = header.candidates()
        key = store.data_key(header, str(digest))
        newest_index, newest = candidates[0]
        if newest.kek_id == target.id:
            return False
        generation = newest.generation + 1
        slot = wrap_key(target, key, header, str(digest), generation, random_bytes(NONCE_SIZE))
        slots: list[KeySlot | None] = list(header.slots)
        index = 1 - newest_index
        slots[index] = slot
        _write_slot(fd, replace(header, slots=(slots[0], slots[1])), index)
        return True
    finally:
        os.close(fd)


def clear(store: EncryptedBlobStore, digest: Digest, kek_id: str) -> str:
    """Remove ``kek_id``'s wrap from the object's header when another slot holds a valid wrap.

    Returns ``"cleared"``, ``"absent"`` (no wrap under ``kek_id``) or ``"only"`` (that wrap is
    the only one: rotate first)."""
    fd = os.open(store.path(digest), os.O_RDWR)
    try:
        header = _read_header(fd, digest)
        retired = [i for i, s in enumerate(header.slots) if s is not None and s.kek_id == kek_id]
        if not retired:
            return "absent"
        others = [s for s in header.slots if s is not None and s.kek_id != kek_id]
        if not others:
            return "only"
        # Proves the other slot unwraps (raises CorruptObject otherwise) before erasing.
        store.data_key(replace(header, slots=(others[0], None)), str(digest))
        for index in retired:
            slots: list[KeySlot | None] = list(header.slots)
            slots[index] = None
            header = replace(header, slots=(slots[0], slots[1]))
            _write_slot(fd, header, index)
        return "cleared"
    finally:
        os.close(fd)


def census(store: EncryptedBlobStore) -> Counter[str]:
    """How many objects have each KEK id in their newest slot."""
    counts: Counter[str] = Counter()
    for digest in store.digests():
        kek_id = newest_kek(store, digest)
        if kek_id is not None:
            counts[kek_id] += 1
    return counts
