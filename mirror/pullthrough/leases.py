"""Which blobs are being filled or served right now, so retention leaves them alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from mirror.oci.digest import Digest


class Leases:
    """Counted holds on blobs by digest: a blob is in use while any hold is unreleased."""

    def __init__(self) -> None:
        self._holds: Counter[Digest] = Counter()

    def hold(self, digest: Digest) -> Callable[[], None]:
        """Hold ``digest`` in use until the returned release is called (later calls do
        nothing)."""
        self._holds[digest] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._holds[digest] -= 1
                if self._holds[digest] <= 0:
                    del self._holds[digest]

        return release

    def held(self, digest: Digest) -> bool:
        """Whether ``digest`` is held now."""
        return self._holds[digest] > 0
