"""Drive ``podman`` 4.3 (no daemon) with its own storage and its own ``registries.conf``.

Each :class:`Podman` keeps its image store (``--root``), run state (``--runroot``) and temp
files under one directory and reads a private ``registries.conf`` named by
``CONTAINERS_REGISTRIES_CONF``, so a test neither sees nor changes the machine's
``/etc/containers`` (the drop-ins there still apply; a test's registry names are its own).
A ``[[registry.mirror]]`` location may carry a path (``127.0.0.1:PORT/registry.test`` asks
``/v2/registry.test/<repo>/...``); a path segment with a port is refused as an invalid
reference, so a path-prefix mirror needs a port-free name for the upstream. podman pings
``/v2/`` and GETs the manifest by tag; it sends no ``ns``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PODMAN_BINARY = "podman"
PODMAN_TIMEOUT = 120.0


def mirror_registries_conf(registry: str, mirror_location: str, *, insecure: bool = True) -> str:
    """A ``registries.conf`` sending pulls of ``registry`` images to ``mirror_location``
    (``host:port[/path]``) first; ``insecure`` allows plain HTTP to the mirror."""
    flag = "true" if insecure else "false"
    return (
        "unqualified-search-registries = []\n\n"
        "[[registry]]\n"
        f'prefix = "{registry}"\n'
        f'location = "{registry}"\n\n'
        "[[registry.mirror]]\n"
        f'location = "{mirror_location}"\n'
        f"insecure = {flag}\n"
    )


class Podman:
    """``podman`` with every file it writes under ``base_dir`` and ``registries_conf`` as its
    registries configuration (write it with :func:`mirror_registries_conf`). podman refuses a
    run root longer than 50 characters, so that one lives in a short temporary directory
    which :meth:`close` removes."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        base_dir.mkdir(parents=True, exist_ok=True)
        (base_dir / "tmp").mkdir(exist_ok=True)
        # containers/image stats the file REGISTRY_AUTH_FILE names: an empty one, not none.
        (base_dir / "auth.json").write_text('{"auths": {}}')
        self.run_root = Path(tempfile.mkdtemp(prefix="pdm-"))

    def close(self) -> None:
        """Remove the run root (podman keeps no process running between commands)."""
        shutil.rmtree(self.run_root, ignore_errors=True)

    @property
    def registries_conf(self) -> Path:
        """The private ``registries.conf`` (``CONTAINERS_REGISTRIES_CONF``)."""
        return self.base_dir / "registries.conf"

    def argv(self, *args: str) -> list[str]:
        """``podman`` with private storage, no systemd, no event log, then ``args``."""
        return [
            PODMAN_BINARY,
            "--root", str(self.base_dir / "root"),
            "--runroot", str(self.run_root),
            "--tmpdir", str(self.base_dir / "tmp"),
            "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "none",
            *args,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        """Environment: the private ``registries.conf`` and an auth file under ``base_dir``."""
        return {
            **os.environ,
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "REGISTRY_AUTH_FILE": str(self.base_dir / "auth.json"),
            "TMPDIR": str(self.base_dir / "tmp"),
        }

    async def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS...`` without blocking the event loop; never raises on a non-zero
        exit (check ``returncode``)."""
        argv = self.argv(*args)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), PODMAN_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        returncode = proc.returncode if proc.returncode is not None else -1
        return subprocess.CompletedProcess(argv, returncode, out.decode(), err.decode())

    async def pull(self, ref: str) -> subprocess.CompletedProcess[str]:
        """``podman pull REF`` (quiet: stdout is the image ID)."""
        return await self.run("pull", "--quiet", ref)
