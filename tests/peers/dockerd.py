"""Run the Docker engine (``dockerd`` 20.10) with private directories, and drive it with ``docker``.

Every file the daemon writes lives under one directory: ``--data-root``, ``--exec-root``, the
pid file, the API socket and the CLI's own config (``DOCKER_CONFIG``, where ``docker login``
stores credentials). No bridge, no iptables, the ``vfs`` storage driver: up in about 2 s, and
nothing is left on the machine once it is stopped. Without ``--containerd`` it starts its own
containerd child, which exits with it. ``registry-mirrors`` are used for Docker Hub names only
(``library/...``, bare names) and are asked at the root path; 127.0.0.0/8 is an insecure
registry by default, so a plain-HTTP mirror on 127.0.0.1 works.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from tests.peers.process import ServiceProcess

DOCKERD_BINARY = "dockerd"
DOCKER_BINARY = "docker"
START_TIMEOUT = 120.0  # dockerd with its containerd child, on a loaded 2-core machine
DOCKER_TIMEOUT = 120.0
# sun_path holds 108 bytes; the daemon also puts its containerd's sockets under the exec root.
_MAX_SOCKET_DIR_LENGTH = 60


class DockerdStartError(RuntimeError):
    """``dockerd`` exited or did not answer ``docker version`` in time; carries its log."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}\n--- dockerd.log (tail) ---\n{log_tail}")
        self.log_tail = log_tail


class Dockerd(ServiceProcess):
    """A ``dockerd`` whose state lives under ``base_dir`` (sockets under a short temp dir).

    ``registry_mirrors`` go into its ``daemon.json``; ``storage_driver`` is ``vfs`` unless a
    test needs image builds to be fast (``overlay2``, where the kernel has overlayfs). Use
    ``async with`` / ``await start()``, or ``with`` / ``start_sync()``; :meth:`docker` runs the
    CLI against this daemon only.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        registry_mirrors: tuple[str, ...] = (),
        storage_driver: str = "vfs",
    ) -> None:
        self.base_dir = base_dir
        self.registry_mirrors = registry_mirrors
        self.storage_driver = storage_driver
        self._process: subprocess.Popen[bytes] | None = None
        self._run_dir: Path | None = None

    @property
    def run_dir(self) -> Path:
        """Short directory holding the API socket and the exec root (set at start)."""
        if self._run_dir is None:
            raise RuntimeError("dockerd is not started")
        return self._run_dir

    @property
    def socket(self) -> Path:
        """The API socket (``DOCKER_HOST=unix://...``)."""
        return self.run_dir / "docker.sock"

    @property
    def config_path(self) -> Path:
        """The ``daemon.json`` written at start."""
        return self.base_dir / "daemon.json"

    @property
    def client_config_dir(self) -> Path:
        """``DOCKER_CONFIG`` of the CLI: ``docker login`` writes its ``config.json`` here."""
        return self.base_dir / "client"

    @property
    def log_path(self) -> Path:
        """The daemon's log (stdout and stderr)."""
        return self.base_dir / "dockerd.log"

    def daemon_config(self) -> dict[str, object]:
        """``daemon.json``: the registry mirrors, nothing else."""
        return {"registry-mirrors": list(self.registry_mirrors)}

    def argv(self) -> list[str]:
        """The daemon's command line: private roots and socket, no networking set-up."""
        return [
            DOCKERD_BINARY,
            "--data-root", str(self.base_dir / "root"),
            "--exec-root", str(self.run_dir / "exec"),
            "--pidfile", str(self.run_dir / "docker.pid"),
            "-H", f"unix://{self.socket}",
            f"--storage-driver={self.storage_driver}",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--config-file", str(self.config_path),
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        """Environment for the CLI: this daemon's socket and the private client config."""
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(self.client_config_dir),
        }

    async def start(self) -> None:
        """Start and wait until the API answers; raises :class:`DockerdStartError`."""
        self._launch()
        deadline = time.monotonic() + START_TIMEOUT
        while not await asyncio.to_thread(self._ready):
            if time.monotonic() > deadline:
                self._fail(f"no answer after {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)

    def start_sync(self) -> None:
        """Blocking :meth:`start`."""
        self._launch()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if time.monotonic() > deadline:
                self._fail(f"no answer after {START_TIMEOUT:.0f} s")
            time.sleep(0.1)

    async def docker(
        self, *args: str, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS...`` against this daemon without blocking the event loop; never
        raises on a non-zero exit (check ``returncode``)."""
        argv = [DOCKER_BINARY, *args]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), DOCKER_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        returncode = proc.returncode if proc.returncode is not None else -1
        return subprocess.CompletedProcess(argv, returncode, out.decode(), err.decode())

    def _launch(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"dockerd already running (pid {self._process.pid})")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.client_config_dir.mkdir(exist_ok=True)
        self._run_dir = Path(tempfile.mkdtemp(prefix="dkd-"))
        assert len(str(self._run_dir)) < _MAX_SOCKET_DIR_LENGTH
        self.config_path.write_text(json.dumps(self.daemon_config()))
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def _ready(self) -> bool:
        process = self._process
        assert process is not None
        if process.poll() is not None:
            self._fail(f"exited with status {process.returncode}")
        if not self.socket.is_socket():
            return False
        try:
            done = subprocess.run(
                [DOCKER_BINARY, "version", "--format", "{{.Server.Version}}"],
                env=self.env(),
                capture_output=True,
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False  # a daemon still starting on a loaded machine: START_TIMEOUT decides
        return done.returncode == 0

    def _after_stop(self) -> None:
        # dockerd stops its containerd child on TERM; the exec root holds only sockets now.
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def _fail(self, message: str) -> NoReturn:
        self.stop_sync()
        tail = ""
        if self.log_path.exists():
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        raise DockerdStartError(f"dockerd in {self.base_dir} {message}", tail)
