"""Drive ``buildah`` 1.28 (no daemon) with its own storage, as ``tests.peers.podman`` does.

buildah shares podman's image library (containers/image) and its auth file, so the runner
is podman's with buildah's global flags: private ``--root``/``--runroot``, the ``vfs``
driver, and the private ``registries.conf`` and auth file the environment names.
"""

from __future__ import annotations

from tests.peers.podman import Podman

BUILDAH_BINARY = "buildah"


class Buildah(Podman):
    """``buildah`` with every file it writes under ``base_dir`` (see :class:`Podman`)."""

    def argv(self, *args: str) -> list[str]:
        """``buildah`` with private storage and the ``vfs`` driver, then ``args``."""
        return [
            BUILDAH_BINARY,
            "--root", str(self.base_dir / "root"),
            "--runroot", str(self.run_root),
            "--storage-driver", "vfs",
            *args,
        ]  # fmt: skip
