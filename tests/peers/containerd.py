"""Run ``containerd`` 1.6 as a real node-local client and pull through ``ctr``.

The daemon gets its own root, state and sockets under one directory and starts without the
CRI plugin (ready in ~50 ms here). Mirrors are configured the way kubelets' containerd is:
a hosts directory with ``<registry host>/hosts.toml``. ``ctr`` 1.6 has no ``--skip-unpack``;
``ctr content fetch`` pulls without unpacking, ``ctr images pull`` unpacks (overlayfs works
here). On a 404, other error status or network error from a mirror containerd silently falls
back to the ``server``, so a test must check that the mirror really served.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from tests.peers.process import ServiceProcess

CONTAINERD_BINARY = "containerd"
CTR_BINARY = "ctr"
START_TIMEOUT = 10.0
CTR_TIMEOUT = 120.0
# sun_path holds 108 bytes; pytest's tmp paths plus "/containerd.sock.ttrpc" can exceed it.
_MAX_SOCKET_DIR_LENGTH = 80


class ContainerdStartError(RuntimeError):
    """``containerd`` exited or its socket did not appear in time; carries its log."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}\n--- containerd.log (tail) ---\n{log_tail}")
        self.log_tail = log_tail


def write_hosts_toml(
    hosts_dir: Path,
    registry_host: str,
    origin_url: str,
    mirror_url: str,
    *,
    capabilities: tuple[str, ...] = ("pull", "resolve"),
    ca: Path | None = None,
    client: tuple[Path, Path] | None = None,
) -> Path:
    """Write ``<hosts_dir>/<registry_host>/hosts.toml`` sending pulls of ``registry_host``
    images to ``mirror_url`` first and ``origin_url`` (the ``server``) as fallback; ``ca``
    verifies an HTTPS mirror, ``client`` is a (certificate, key) pair for mTLS."""
    host_dir = hosts_dir / registry_host
    host_dir.mkdir(parents=True, exist_ok=True)
    caps = ", ".join(f'"{cap}"' for cap in capabilities)
    path = host_dir / "hosts.toml"
    text = f'server = "{origin_url}"\n\n[host."{mirror_url}"]\n  capabilities = [{caps}]\n'
    if ca is not None:
        text += f'  ca = "{ca}"\n'
    if client is not None:
        text += f'  client = [["{client[0]}", "{client[1]}"]]\n'
    path.write_text(text)
    return path


class Containerd(ServiceProcess):
    """A ``containerd`` process whose files all live under ``base_dir``.

    Use ``async with`` / ``await start()``, or ``with`` / ``start_sync()``. ``ctr`` commands
    run in ``namespace``.
    """

    def __init__(self, base_dir: Path, namespace: str = "test") -> None:
        self.base_dir = base_dir
        self.namespace = namespace
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir = base_dir
        self._own_socket_dir = False

    @property
    def socket(self) -> Path:
        """The gRPC socket (``ctr -a``): in ``base_dir``, or in a short temporary directory
        when ``base_dir`` is too long for a Unix socket path."""
        return self._socket_dir / "containerd.sock"

    @property
    def config_path(self) -> Path:
        """The config file written at start."""
        return self.base_dir / "config.toml"

    @property
    def log_path(self) -> Path:
        """The daemon's log (stdout and stderr)."""
        return self.base_dir / "containerd.log"

    def config(self) -> str:
        """The daemon config: private root/state/sockets, no CRI, no debug or metrics."""
        return (
            "version = 2\n"
            f'root = "{self.base_dir / "root"}"\n'
            f'state = "{self.base_dir / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
            '[debug]\n  address = ""\n'
            '[metrics]\n  address = ""\n'
        )

    async def start(self) -> None:
        """Start and wait for the socket; raises :class:`ContainerdStartError`."""
        self._launch()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if time.monotonic() > deadline:
                self._fail(f"socket missing after {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.02)

    def start_sync(self) -> None:
        """Blocking :meth:`start`."""
        self._launch()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if time.monotonic() > deadline:
                self._fail(f"socket missing after {START_TIMEOUT:.0f} s")
            time.sleep(0.02)

    def _after_stop(self) -> None:
        if self._own_socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir, self._own_socket_dir = self.base_dir, False

    def ctr_args(self, *args: str) -> list[str]:
        """``ctr -a SOCK -n NAMESPACE ARGS...``."""
        return [CTR_BINARY, "-a", str(self.socket), "-n", self.namespace, *args]

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a ``ctr`` command against this daemon; never raises on a non-zero exit."""
        return subprocess.run(
            self.ctr_args(*args), capture_output=True, text=True, timeout=CTR_TIMEOUT, check=False
        )

    async def ctr_async(self, *args: str) -> subprocess.CompletedProcess[str]:
        """:meth:`ctr` without blocking the event loop (for servers in the same loop)."""
        argv = self.ctr_args(*args)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CTR_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        returncode = proc.returncode if proc.returncode is not None else -1
        return subprocess.CompletedProcess(argv, returncode, out.decode(), err.decode())

    def pull(
        self,
        ref: str,
        hosts_dir: Path,
        *,
        plain_http: bool = True,
        unpack: bool = False,
        all_platforms: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Pull ``ref`` (``host/repo:tag``) honouring ``hosts_dir``: ``ctr content fetch``, or
        ``ctr images pull`` when ``unpack``. Check ``returncode`` yourself."""
        return self.ctr(*self._pull_args(ref, hosts_dir, plain_http, unpack, all_platforms))

    async def pull_async(
        self,
        ref: str,
        hosts_dir: Path,
        *,
        plain_http: bool = True,
        unpack: bool = False,
        all_platforms: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """:meth:`pull` without blocking the event loop."""
        args = self._pull_args(ref, hosts_dir, plain_http, unpack, all_platforms)
        return await self.ctr_async(*args)

    def content_digests(self) -> set[str]:
        """Digests of every blob in the content store (``ctr content ls -q``)."""
        done = self.ctr("content", "ls", "-q")
        if done.returncode != 0:
            raise RuntimeError(f"ctr content ls failed: {done.stderr}")
        return {line.strip() for line in done.stdout.splitlines() if line.strip()}

    @staticmethod
    def _pull_args(
        ref: str, hosts_dir: Path, plain_http: bool, unpack: bool, all_platforms: bool
    ) -> list[str]:
        args = ["images", "pull"] if unpack else ["content", "fetch"]
        args += ["--hosts-dir", str(hosts_dir)]
        if plain_http:
            args.append("--plain-http")
        if all_platforms:
            args.append("--all-platforms")
        return [*args, ref]

    def _launch(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"containerd already running (pid {self._process.pid})")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.base_dir)) > _MAX_SOCKET_DIR_LENGTH:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="ctd-"))
            self._own_socket_dir = True
        self.config_path.write_text(self.config())
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [CONTAINERD_BINARY, "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _ready(self) -> bool:
        process = self._process
        assert process is not None
        if process.poll() is not None:
            self._fail(f"exited with status {process.returncode}")
        return self.socket.is_socket()

    def _fail(self, message: str) -> NoReturn:
        self.stop_sync()
        tail = ""
        if self.log_path.exists():
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        raise ContainerdStartError(f"containerd in {self.base_dir} {message}", tail)
