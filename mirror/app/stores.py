"""Wiring of the blob store from the configuration: encrypted (the default) or plaintext.

Used by the app and by the maintenance commands (``mirror cache verify``, ``mirror keys``),
so they all open the cache the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.blobstore.keyring import CacheKeys, KeyRegistry
from mirror.clock import Clock, SystemClock
from mirror.config import Config, EncryptionConfig
from mirror.crypto.envelope import CIPHERS, cipher_for_cpu
from mirror.crypto.keys import KeyringError
from mirror.crypto.sources import KeyCommand, KeyEnv, KeyFile, KeySource
from mirror.errors import CorruptObject

BlobStoreImpl = FilesystemBlobStore | EncryptedBlobStore


def key_source(
    enc: EncryptionConfig, environ: Mapping[str, str], clock: Clock | None = None
) -> KeySource:
    """The configured source of key-encryption keys (``clock`` paces a command's refresh)."""
    if enc.kek_source == "env":
        return KeyEnv(enc.kek_env, environ)
    if enc.kek_source == "command":
        return KeyCommand(enc.kek_command, refresh=enc.kek_command_refresh, clock=clock)
    return KeyFile(Path(enc.kek_file))


def cipher_of(name: str, cpuinfo: Callable[[], str]) -> int:
    """The cipher id for ``encryption.cipher`` (``auto`` asks the CPU)."""
    return cipher_for_cpu(cpuinfo()) if name == "auto" else CIPHERS[name]


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def open_keys(
    config: Config,
    *,
    environ: Mapping[str, str] | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    clock: Clock | None = None,
) -> CacheKeys:
    """The checked keyring of the configured cache; raises ``KeyringError``."""
    clock = clock or SystemClock()
    return CacheKeys.open(
        key_source(config.encryption, os.environ if environ is None else environ, clock),
        Path(config.storage.data_dir),
        random_bytes=random_bytes,
        now=clock.now(),
    )


def open_store(
    config: Config,
    *,
    on_corrupt: Callable[[CorruptObject], None] | None = None,
    environ: Mapping[str, str] | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    cpuinfo: Callable[[], str] = read_cpuinfo,
    clock: Clock | None = None,
) -> BlobStoreImpl:
    """The cache's blob store. Raises ``KeyringError`` when the keys cannot open it."""
    data_dir = Path(config.storage.data_dir)
    enc = config.encryption
    if not enc.enabled:
        if KeyRegistry(data_dir).exists():
            raise KeyringError(
                f"the cache in {data_dir} is encrypted but encryption.enabled = false: "
                "enable it, or empty the cache"
            )
        return FilesystemBlobStore(data_dir)
    keys = open_keys(config, environ=environ, random_bytes=random_bytes, clock=clock)
    return EncryptedBlobStore(
        data_dir,
        keys,
        cipher=cipher_of(enc.cipher, cpuinfo),
        chunk_size=enc.chunk_size,
        random_bytes=random_bytes,
        on_corrupt=on_corrupt,
    )
