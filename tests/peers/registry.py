"""Run Debian's ``docker-registry`` (CNCF distribution 2.8) as a real peer, and push to or copy
from it with ``skopeo``.

Measured on this machine: the registry writes one Apache "combined" access-log line per request
to **stdout** once the response is finished (see :mod:`tests.peers.accesslog`), and its own
logrus lines (``level=info msg="response completed" ...``) to **stderr**. The access log is kept
in ``access.log`` and parsed by :meth:`Registry.count_requests`; stderr goes to ``registry.log``.
The config is written as JSON, which the registry's YAML parser accepts.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NoReturn

from tests.peers.accesslog import AccessLogEntry, parse_access_log
from tests.peers.ports import free_port
from tests.peers.process import ServiceProcess
from tests.peers.skopeo import skopeo_copy, skopeo_copy_async

REGISTRY_BINARY = "docker-registry"
START_TIMEOUT = 10.0


class RegistryStartError(RuntimeError):
    """``docker-registry`` exited or did not answer ``GET /v2/`` in time; carries its log."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}\n--- registry.log (tail) ---\n{log_tail}")
        self.log_tail = log_tail


class Registry(ServiceProcess):
    """A ``docker-registry`` process with its own storage and logs under ``root_dir``.

    ``proxy_remote_url`` makes it a pull-through cache of that upstream; ``htpasswd`` turns
    on Basic auth. Use ``async with`` / ``await start()``, or ``with`` / ``start_sync()``.
    """

    def __init__(
        self,
        root_dir: Path,
        port: int | None = None,
        proxy_remote_url: str | None = None,
        htpasswd: Path | None = None,
        *,
        proxy_username: str | None = None,
        proxy_password: str | None = None,
    ) -> None:
        self.root_dir = root_dir
        self.proxy_remote_url = proxy_remote_url
        self.htpasswd = htpasswd
        self.proxy_username = proxy_username
        self.proxy_password = proxy_password
        self._fixed_port = port
        self.port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}"

    @property
    def config_path(self) -> Path:
        """The config file written at start."""
        return self.root_dir / "config.yml"

    @property
    def access_log_path(self) -> Path:
        """Combined-format access log (the process's stdout)."""
        return self.root_dir / "access.log"

    @property
    def log_path(self) -> Path:
        """The registry's own log (its stderr)."""
        return self.root_dir / "registry.log"

    @property
    def storage_dir(self) -> Path:
        """Filesystem storage root."""
        return self.root_dir / "storage"

    def config(self) -> dict[str, object]:
        """The registry configuration for the current port and options."""
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            # A fixed secret silences the start-up warning; uploads never span instances here.
            "http": {"addr": self.host, "secret": "mirror-testing"},
        }
        if self.proxy_remote_url is not None:
            proxy = {"remoteurl": self.proxy_remote_url}
            if self.proxy_username is not None:
                proxy["username"] = self.proxy_username
                proxy["password"] = self.proxy_password or ""
            config["proxy"] = proxy
        if self.htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "mirror-testing", "path": str(self.htpasswd)}}
        return config

    async def start(self) -> None:
        """Start and wait until ``GET /v2/`` answers; raises :class:`RegistryStartError`."""
        for attempt in range(3):
            self._launch()
            deadline = time.monotonic() + START_TIMEOUT
            while not await asyncio.to_thread(self._ready, attempt):
                if time.monotonic() > deadline:
                    self._fail(f"did not answer GET /v2/ within {START_TIMEOUT:.0f} s")
                await asyncio.sleep(0.02)
            if self._process is not None:
                return

    def start_sync(self) -> None:
        """Blocking :meth:`start`, for sync fixtures and scripts."""
        for attempt in range(3):
            self._launch()
            deadline = time.monotonic() + START_TIMEOUT
            while not self._ready(attempt):
                if time.monotonic() > deadline:
                    self._fail(f"did not answer GET /v2/ within {START_TIMEOUT:.0f} s")
                time.sleep(0.02)
            if self._process is not None:
                return

    def requests(self) -> list[AccessLogEntry]:
        """Every request logged so far, oldest first."""
        if not self.access_log_path.exists():
            return []
        return parse_access_log(self.access_log_path.read_text(errors="replace"))

    def count_requests(self, method: str, path_contains: str) -> int:
        """How many ``method`` requests whose path contains ``path_contains`` were logged.

        A line is written when its response has finished, so a count taken right after a
        client returns may lag; :meth:`wait_for_requests` waits for it.
        """
        return sum(
            1
            for entry in self.requests()
            if entry.method == method.upper() and path_contains in entry.path
        )

    async def wait_for_requests(
        self, method: str, path_contains: str, at_least: int = 1, *, within: float = 5.0
    ) -> int:
        """Poll :meth:`count_requests` until it reaches ``at_least`` or ``within`` seconds
        pass; returns the last count either way."""
        deadline = time.monotonic() + within
        while True:
            count = self.count_requests(method, path_contains)
            if count >= at_least or time.monotonic() > deadline:
                return count
            await asyncio.sleep(0.02)

    def reference(self, repo: str, reference: str) -> str:
        """``HOST/REPO:TAG`` or ``HOST/REPO@DIGEST``."""
        separator = "@" if ":" in reference else ":"
        return f"{self.host}/{repo}{separator}{reference}"

    def push(
        self,
        layout_dir: Path,
        tag: str,
        repo: str,
        *,
        docker_v2s2: bool = False,
        all_platforms: bool = False,
        creds: tuple[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``skopeo copy oci:LAYOUT:TAG docker://HOST/REPO:TAG``; ``docker_v2s2`` converts to
        Docker schema2 media types, ``all_platforms`` copies every image of an index."""
        return skopeo_copy(
            f"oci:{layout_dir}:{tag}",
            f"docker://{self.reference(repo, tag)}",
            *self._push_options(docker_v2s2, all_platforms, creds),
        )

    async def push_async(
        self,
        layout_dir: Path,
        tag: str,
        repo: str,
        *,
        docker_v2s2: bool = False,
        all_platforms: bool = False,
        creds: tuple[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """:meth:`push` without blocking the event loop."""
        return await skopeo_copy_async(
            f"oci:{layout_dir}:{tag}",
            f"docker://{self.reference(repo, tag)}",
            *self._push_options(docker_v2s2, all_platforms, creds),
        )

    def copy_to_dir(
        self,
        repo: str,
        reference: str,
        out_dir: Path,
        *,
        all_platforms: bool = False,
        creds: tuple[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``skopeo copy docker://HOST/REPO:REF dir:OUT``: blobs land as ``OUT/<hex>``, the
        manifest as ``OUT/manifest.json`` (children of an index as ``<hex>.manifest.json``)."""
        return skopeo_copy(
            f"docker://{self.reference(repo, reference)}",
            f"dir:{out_dir}",
            *self._pull_options(all_platforms, creds),
        )

    async def copy_to_dir_async(
        self,
        repo: str,
        reference: str,
        out_dir: Path,
        *,
        all_platforms: bool = False,
        creds: tuple[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """:meth:`copy_to_dir` without blocking the event loop."""
        return await skopeo_copy_async(
            f"docker://{self.reference(repo, reference)}",
            f"dir:{out_dir}",
            *self._pull_options(all_platforms, creds),
        )

    @staticmethod
    def _push_options(
        docker_v2s2: bool, all_platforms: bool, creds: tuple[str, str] | None
    ) -> list[str]:
        options = ["--dest-tls-verify=false"]
        if docker_v2s2:
            options += ["--format", "v2s2"]
        if all_platforms:
            options.append("--all")
        if creds is not None:
            options += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
        return options

    @staticmethod
    def _pull_options(all_platforms: bool, creds: tuple[str, str] | None) -> list[str]:
        options = ["--src-tls-verify=false"]
        if all_platforms:
            options.append("--all")
        if creds is not None:
            options += ["--src-creds", f"{creds[0]}:{creds[1]}"]
        return options

    def _launch(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"registry already running (pid {self._process.pid})")
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        with self.access_log_path.open("ab") as out, self.log_path.open("ab") as err:
            self._process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def _ready(self, attempt: int) -> bool:
        """Whether ``/v2/`` answers (any status: 401 counts) and our process is still alive.

        If the process died of a port clash on an auto-chosen port, forget it and pick a new
        port (the caller relaunches). The process is checked after the probe so that another
        server that won the port race is not mistaken for ours.
        """
        process = self._process
        assert process is not None
        answered = _answers(f"{self.url}/v2/")
        if process.poll() is None:
            return answered
        self._process = None
        log = self._log_tail()
        if self._fixed_port is None and attempt < 2 and "address already in use" in log:
            self.port = free_port()
            return True
        self._fail(f"exited with status {process.returncode}", log)

    def _fail(self, message: str, log: str | None = None) -> NoReturn:
        self.stop_sync()
        tail = log if log is not None else self._log_tail()
        raise RegistryStartError(f"docker-registry on {self.host} {message}", tail)

    def _log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _answers(url: str) -> bool:
    """Whether an HTTP server answers ``GET url`` at all."""
    try:
        with urllib.request.urlopen(url, timeout=0.5):
            return True
    except urllib.error.HTTPError as error:
        error.close()  # it holds the response's socket open
        return True
    except OSError:
        return False
