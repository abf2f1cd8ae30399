"""The keyring as a cache uses it: checked at start-up against the KEKs the cache was written
with (``<data_dir>/keys.json`` records each one's id and public check value), and reloaded
when its source changes so that a rotation is picked up without a restart."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from mirror.crypto.keys import Kek, Keyring, KeyringError
from mirror.crypto.sources import KeyFile, KeySource

log = logging.getLogger(__name__)

REGISTRY_NAME = "keys.json"


def has_objects(data_dir: Path) -> bool:
    """Whether the cache under ``data_dir`` holds any committed object."""
    blobs = Path(data_dir) / "blobs"
    return blobs.is_dir() and any(p.is_file() for p in blobs.rglob("*"))


class KeyRegistry:
    """``keys.json``: the KEKs whose wraps may be in this cache, as id -> check value."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / REGISTRY_NAME

    def exists(self) -> bool:
        """Whether the KEK registry file exists (the cache was encrypted before)."""
        return self.path.exists()

    def load(self) -> dict[str, str]:
        """The registered KEK ids and their fingerprints ({} before the first start);
        ``KeyringError`` when the file is not a registry."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise KeyringError(f"{self.path}: unreadable: {exc}") from None
        keks = data.get("keks") if isinstance(data, dict) else None
        if not isinstance(keks, dict):
            raise KeyringError(f'{self.path}: expected {{"keks": {{ID: CHECK}}}}')
        return {str(k): str(v) for k, v in keks.items()}

    def save(self, keks: dict[str, str]) -> None:
        """Write the registry atomically (temp file, fsync, rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Unique per process and thread: a rotation may run beside the server.
        temp = self.path.with_name(f".{REGISTRY_NAME}.{os.getpid()}.{threading.get_ident()}")
        temp.write_text(json.dumps({"format": 1, "keks": keks}, indent=2, sort_keys=True) + "\n")
        os.replace(temp, self.path)


def check_keyring(ring: Keyring, registered: dict[str, str], where: str) -> None:
    """Raise ``KeyringError`` unless ``ring`` holds every registered KEK, unchanged."""
    for kek_id, check in sorted(registered.items()):
        kek = ring.get(kek_id)
        if kek is None:
            raise KeyringError(
                f"{where} lacks KEK {kek_id}, which encrypts objects in this cache: "
                "restore it (nothing was deleted)"
            )
        if kek.check_value() != check:
            raise KeyringError(
                f"{where}: KEK {kek_id} is not the key this cache was encrypted with "
                "(its check value differs); nothing was deleted"
            )


class CacheKeys:
    """The verified keyring of one cache."""

    def __init__(self, source: KeySource, registry: KeyRegistry, ring: Keyring) -> None:
        self.source = source
        self.registry = registry
        self.ring = ring
        # Reloads and registrations run on executor threads.
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls,
        source: KeySource,
        data_dir: Path,
        *,
        random_bytes: Callable[[int], bytes],
        now: float,
    ) -> CacheKeys:
        """Load and check the keyring for the cache in ``data_dir``; create the key file only
        for a cache that holds nothing yet. Raises ``KeyringError`` (and changes nothing)."""
        registry = KeyRegistry(data_dir)
        registered = registry.load()
        if not registry.exists() and has_objects(data_dir):
            raise KeyringError(
                f"the cache in {data_dir} holds objects but no {REGISTRY_NAME}: it was written "
                "without encryption (set encryption.enabled = false) or the file was lost"
            )
        if isinstance(source, KeyFile) and not source.exists():
            if registered:
                raise KeyringError(
                    f"{source.describe()} does not exist, but the cache in {data_dir} is "
                    f"encrypted with KEK {', '.join(sorted(registered))}: restore the key "
                    "file (nothing was deleted)"
                )
            source.create(random_bytes, now)
            log.warning(
                "created %s with a new KEK for the cache in %s: back it up, apart from the cache",
                source.describe(),
                Path(data_dir).absolute(),
            )
        ring = source.load()
        check_keyring(ring, registered, source.describe())
        keys = cls(source, registry, ring)
        keys.register(ring.current)
        return keys

    @property
    def current(self) -> Kek:
        """The KEK that wraps new data keys."""
        return self.ring.current

    def register(self, kek: Kek) -> None:
        """Record ``kek`` in ``keys.json`` before anything is wrapped with it."""
        with self._lock:
            registered = self.registry.load()
            if registered.get(kek.id) != kek.check_value():
                registered[kek.id] = kek.check_value()
                self.registry.save(registered)

    def unregister(self, kek_id: str) -> None:
        """Forget a retired KEK."""
        with self._lock:
            registered = self.registry.load()
            if registered.pop(kek_id, None) is not None:
                self.registry.save(registered)

    def is_registered(self, kek_id: str) -> bool:
        """Whether ``kek_id`` is in the cache's KEK registry."""
        return kek_id in self.registry.load()

    def refresh(self) -> bool:
        """Reload the keyring if its source changed; returns whether it did. A reloaded
        keyring that lost or changed a registered KEK is refused (logged; the old one stays)."""
        with self._lock:
            if not self.source.changed():
                return False
            try:
                ring = self.source.load()
                check_keyring(ring, self.registry.load(), self.source.describe())
            except KeyringError as exc:
                log.error("keeping the loaded keyring: %s", exc)
                return False
            if ring.current.id != self.ring.current.id:
                log.info("KEK %s is now current (was %s)", ring.current.id, self.ring.current.id)
                self.register(ring.current)
            self.ring = ring
            return True

    def find(self, kek_id: str) -> Kek | None:
        """The KEK ``kek_id``, reloading the keyring once if it is not known yet."""
        kek = self.ring.get(kek_id)
        if kek is None and self.refresh():
            kek = self.ring.get(kek_id)
        return kek
