"""A real HAProxy (Debian's) on 127.0.0.1 in the foreground, stopped by PID.

The test gives the configuration ``mirror tier haproxy-config`` prints; this adds a second
file with a stats socket under the prefix (to read which servers HAProxy marked down) and
any extra sections the test wants (echoing backends).
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

EXTRA = """\
global
    stats socket {prefix}/admin.sock mode 600 level admin
"""


def haproxy_binary() -> str | None:
    """The haproxy executable, if installed."""
    return shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )


class HAProxy(ServiceProcess):
    """HAProxy serving ``config`` (plus ``extra`` sections); ``ports`` are the 127.0.0.1
    ports it must accept on before :meth:`start_sync` returns."""

    def __init__(self, prefix: Path, config: str, ports: Sequence[int], extra: str = "") -> None:
        self.prefix = prefix
        self.config = config
        self.extra = extra
        self.ports = tuple(ports)

    def start_sync(self) -> None:
        """Write the configuration, start HAProxy and wait until every port accepts."""
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed")
        self.prefix.mkdir(parents=True, exist_ok=True)
        main = self.prefix / "haproxy.cfg"
        main.write_text(self.config)
        extra = self.prefix / "test.cfg"
        extra.write_text(EXTRA.format(prefix=self.prefix) + self.extra)
        log = (self.prefix / "haproxy.log").open("wb")
        self._process = subprocess.Popen(
            [binary, "-db", "-f", str(main), "-f", str(extra)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_accepts(port) for port in self.ports):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop_sync()
                raise RuntimeError(f"haproxy did not start:\n{self.output()}")
            time.sleep(0.02)

    async def start(self) -> None:
        """:meth:`start_sync` without blocking the event loop."""
        await asyncio.to_thread(self.start_sync)

    def output(self) -> str:
        """What HAProxy printed so far."""
        path = self.prefix / "haproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def command(self, line: str) -> str:
        """One command on the stats socket (``show stat``, ``show servers state``...)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.prefix / "admin.sock"))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_status(self, backend: str) -> dict[str, str]:
        """Each server of ``backend`` (by address) -> ``UP``, ``DOWN``..., from ``show stat``."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        status: dict[str, str] = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("addr"):
                status[row["addr"]] = row["status"]
        return status

    def wait_status(self, backend: str, wanted: dict[str, str], within: float = 10.0) -> None:
        """Until the servers of ``backend`` named in ``wanted`` have those statuses."""
        deadline = time.monotonic() + within
        while True:
            status = self.server_status(backend)
            if all(status.get(server) == state for server, state in wanted.items()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy servers {status}, wanted {wanted}")
            time.sleep(0.05)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
