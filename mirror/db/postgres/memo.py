"""The in-process read memo of the shared store, kept exact by PostgreSQL notifications.

Hot reads (a tag, a manifest record, a repository link) are answered from memory. Another
replica's change reaches this one as a NOTIFY (sent by the tables' triggers, see migration
0002) and drops the entry. A read that raced an invalidation is not kept: every put names the
generation it started in, and any invalidation (or a lost listener) moves the generation on.
While no listener is connected nothing is kept, so a missed notification cannot leave a stale
entry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Hashable
from typing import Any

from mirror.lru import Lru

# The channel the triggers notify on.
CHANNEL = "mirror_metadata"


class SharedMemo:
    """Tags, manifests and links of this process, dropped when any replica changes them."""

    def __init__(self, origin: str, size: int) -> None:
        # Who this process is in the notifications (its connections' application_name).
        self.origin = origin
        self._lock = threading.Lock()
        self._generation = 0
        self._listening = False
        self._size = size
        self._entries: dict[str, Lru[Hashable, Any]] = {}
        self.clear()

    def generation(self) -> int:
        """The current generation, to pass to a later ``put``."""
        with self._lock:
            return self._generation

    def get(self, kind: str, key: Hashable) -> Any:
        """The kept value of ``kind`` under ``key``, or ``None``."""
        with self._lock:
            return self._entries[kind].get(key)

    def put(self, kind: str, key: Hashable, value: Any, generation: int | None = None) -> None:
        """Keep ``value``; a read (``generation`` given) is kept only if nothing was
        invalidated since it started and a listener is connected."""
        with self._lock:
            if generation is not None and (generation != self._generation or not self._listening):
                return
            self._entries[kind].put(key, value)

    def drop(self, kind: str, key: Hashable) -> None:
        """Forget one entry (this process's own write)."""
        with self._lock:
            self._generation += 1
            self._entries[kind].drop(key)

    def clear(self) -> None:
        """Forget everything (a write too broad to name its keys, or a lost listener)."""
        with self._lock:
            self._generation += 1
            self._entries = {kind: Lru(self._size) for kind in ("tag", "manifest", "link")}

    def listening(self, connected: bool) -> None:
        """Note whether the listener is connected; losing it forgets everything."""
        with self._lock:
            self._listening = connected
        if not connected:
            self.clear()

    def notified(self, payload: str) -> None:
        """Apply one notification: ``[origin, kind, *key]``; this process's own are skipped
        (its writes already updated the memo), one it cannot read clears everything."""
        try:
            origin, kind, *key = json.loads(payload)
        except (ValueError, TypeError):
            self.clear()
            return
        if origin == self.origin:
            return
        if kind not in self._entries:
            self.clear()
            return
        with self._lock:
            self._generation += 1
            self._entries[kind].drop(tuple(key) if len(key) > 1 else key[0])
