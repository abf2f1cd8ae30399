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


# Where the key file was by default before it moved beside the data directory.
FORMER_DEFAULT_KEK_FILE = Path("mirror.kek")


def default_kek_file(data_dir: str | Path) -> Path:
    """``<data_dir>.kek``: beside the data directory, not inside it (a copy of the cache
    then carries no key), and found from any working directory the data directory is."""
    data = Path(data_dir).absolute()
    return data.with_name(data.name + ".kek") if data.name else data / "mirror.kek"


def kek_file_of(config: Config) -> Path:
    """The key file ``encryption.kek_file`` names, or the default beside the data directory."""
    enc = config.encryption
    return Path(enc.kek_file) if enc.kek_file else default_kek_file(config.storage.data_dir)


def key_source(
    enc: EncryptionConfig,
    environ: Mapping[str, str],
    clock: Clock | None = None,
    *,
    kek_file: Path | None = None,
) -> KeySource:
    """The configured source of key-encryption keys (``clock`` paces a command's refresh;
    ``kek_file`` is the resolved key file, by default ``encryption.kek_file``)."""
    if enc.kek_source == "env":
        return KeyEnv(enc.kek_env, environ)
    if enc.kek_source == "command":
        return KeyCommand(enc.kek_command, refresh=enc.kek_command_refresh, clock=clock)
    return KeyFile(kek_file or Path(enc.kek_file))


def _refuse_a_lost_default(config: Config, kek_file: Path) -> None:
    """An encrypted cache whose key file is not at the default: never create a new KEK there
    (it could not open the cache); name where the key is looked for and where it used to be."""
    enc = config.encryption
    if enc.kek_file or enc.kek_source != "file" or kek_file.exists():
        return
    data_dir = Path(config.storage.data_dir)
    registered = KeyRegistry(data_dir).load()
    if not registered:
        return
    former = FORMER_DEFAULT_KEK_FILE.absolute()
    where = (
        f"{former} (the former default, in the working directory) exists: move it to "
        f"{kek_file} or set encryption.kek_file = {str(former)!r}"
        if former.exists()
        else f"it is not at the former default {former} either: restore the key file to "
        f"{kek_file}, or set encryption.kek_file to where it is"
    )
    raise KeyringError(
        f"no key file at {kek_file} (the default, beside the data directory), but the cache in "
        f"{data_dir.absolute()} is encrypted with KEK {', '.join(sorted(registered))}; "
        f"{where} (nothing was created or deleted)"
    )


def cipher_of(name: str, cpuinfo: Callable[[], str]) -> int:
    """The cipher id for ``encryption.cipher`` (``auto`` asks the CPU)."""
    return cipher_for_cpu(cpuinfo()) if name == "auto" else CIPHERS[name]


def read_cpuinfo() -> str:
    """The text of ``/proc/cpuinfo`` ("" where there is none), to choose the cipher."""
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
    kek_file = kek_file_of(config)
    _refuse_a_lost_default(config, kek_file)
    environ = os.environ if environ is None else environ
    return CacheKeys.open(
        key_source(config.encryption, environ, clock, kek_file=kek_file),
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
