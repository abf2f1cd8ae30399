"""A real PostgreSQL (Debian's ``postgresql`` package) for the tests: its own data directory
and port on 127.0.0.1, run as the ``postgres`` user (it refuses root), stopped by PID.

``postgres_server`` is a session fixture (one server, about 3 s to start); ``postgres_dsn``
gives each test a fresh database on it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from tests.peers.ports import free_port
from tests.peers.process import ServiceProcess

START_TIMEOUT = 30.0


def postgres_bin() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/N/bin``, or ``None``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_major)
    return Path(found[-1]).parent if found else None


def _major(path: str) -> int:
    return int(Path(path).parts[4]) if Path(path).parts[4].isdigit() else 0


class PostgresServer(ServiceProcess):
    """``postgres -D DIR/data -p PORT`` on 127.0.0.1 with trust authentication."""

    def __init__(self, directory: Path, bindir: Path) -> None:
        self.directory = directory
        self.bindir = bindir
        self.port = free_port()
        self._databases = count(1)

    def _as_postgres(self) -> dict[str, object]:
        return {"user": "postgres"} if os.geteuid() == 0 else {}

    def start_sync(self) -> None:
        """initdb, start, and wait until connections are accepted."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        data = self.directory / "data"
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            **self._as_postgres(),  # type: ignore[call-overload]
        )
        log = open(self.directory / "log", "wb")  # kept for the process
        self._process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.directory),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            **self._as_postgres(),  # type: ignore[call-overload]
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.psql("SELECT 1", check=False).returncode == 0:
                return
            assert self._process is not None
            if self._process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start: {(self.directory / 'log').read_text()}")

    def psql(
        self, sql: str, *, database: str = "postgres", check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``sql`` with ``psql``."""
        return subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            check=check,
            capture_output=True,
        )

    def dsn(self, database: str) -> str:
        """The DSN of ``database`` on this server (trust authentication: no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its name."""
        name = f"t{next(self._databases)}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def stop_sync(self) -> None:
        """Fast shutdown (SIGINT to the postmaster's PID), then the base class's stop."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        super().stop_sync()

    def _after_stop(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL for the test session (skipped only when the package is missing)."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("needs PostgreSQL (apt-get install postgresql)")
    # Not under pytest's tmp dir: the postgres user must be able to reach it.
    directory = Path(f"/tmp/mirror-pg-{os.getpid()}")
    with PostgresServer(directory, bindir) as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a fresh database for one test."""
    return postgres_server.dsn(postgres_server.new_database())
