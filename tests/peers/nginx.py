"""A real nginx (Debian's) on 127.0.0.1 with its own prefix directory, stopped by PID.

The test gives the ``http``-context configuration (what ``mirror tier nginx-config`` prints);
this wraps it in a main file that keeps the pid file, logs and temp paths under the prefix.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.peers.process import ServiceProcess

START_TIMEOUT = 10.0

MAIN_CONF = """\
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    log_format tier '$request_uri -> $upstream_addr $upstream_status $status';
    access_log {prefix}/access.log tier;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/http.conf;
}}
"""


def nginx_binary() -> str | None:
    """The nginx executable, if installed."""
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


class Nginx(ServiceProcess):
    """nginx in the foreground (``daemon off``) serving ``http_conf``; ``ports`` are the
    127.0.0.1 ports it must accept on before :meth:`start_sync` returns."""

    def __init__(self, prefix: Path, http_conf: str, ports: Sequence[int]) -> None:
        self.prefix = prefix
        self.http_conf = http_conf
        self.ports = tuple(ports)

    @property
    def access_log(self) -> Path:
        """``$request_uri -> $upstream_addr $upstream_status $status`` per request."""
        return self.prefix / "access.log"

    def error_log(self) -> str:
        """nginx's error log so far."""
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_sync(self) -> None:
        """Write the configuration, start nginx and wait until every port accepts."""
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        self.prefix.mkdir(parents=True, exist_ok=True)
        (self.prefix / "http.conf").write_text(self.http_conf)
        main = self.prefix / "nginx.conf"
        main.write_text(MAIN_CONF.format(prefix=self.prefix))
        self._process = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(main), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_accepts(port) for port in self.ports):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop_sync()
                raise RuntimeError(f"nginx did not start:\n{self.error_log()}")
            time.sleep(0.02)

    async def start(self) -> None:
        """:meth:`start_sync` without blocking the event loop."""
        await asyncio.to_thread(self.start_sync)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
