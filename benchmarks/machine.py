"""Describe the machine and the software versions a run used."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata

from benchmarks.servers import REPO_ROOT
from mirror.bench.results import cpu_model


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _memory() -> str:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, str]:
    """nproc, memory, CPU model, kernel, date, and the versions of everything measured."""
    commit = _first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "mirror"])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "memory": _memory(),
        "cpu": cpu_model(),
        "cpu flags": cpu_flags(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "mirror commit": commit + (" (mirror/ modified)" if dirty not in ("", "unknown") else ""),
        "aiohttp": _package("aiohttp"),
        "uvloop": _package("uvloop"),
        "cryptography": _package("cryptography"),
        "docker-registry": _first_line(["docker-registry", "--version"]),
        "nginx": _first_line(["nginx", "-v"]),
        "curl": " ".join(_first_line(["curl", "--version"]).split()[:2]),
        "skopeo": _first_line(["skopeo", "--version"]),
        "ctr": _first_line(["ctr", "--version"]),
    }


def cpu_flags() -> str:
    """The CPU features that bound the paths measured (AES, SHA, AVX...), from /proc/cpuinfo."""
    wanted = ("aes", "vaes", "sha_ni", "pclmulqdq", "vpclmulqdq", "avx", "avx2", "avx512f")
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return " ".join(f for f in wanted if f in have) or "none of " + " ".join(wanted)
    except OSError:
        pass
    return "unknown"


def _rate(work: Callable[[], int], repeats: int = 3) -> float:
    """Best bytes per second of ``work`` (which returns the bytes it processed)."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        done = work()
        best = max(best, done / (time.perf_counter() - started))
    return best


def sha256_rate(size: int) -> float:
    """sha256 bytes/s on one core, 1 MiB updates (how the mirror hashes)."""
    piece = os.urandom(1 << 20)

    def work() -> int:
        h = hashlib.sha256()
        for _ in range(size >> 20):
            h.update(piece)
        return size

    return _rate(work)


def aead_rate(size: int) -> float:
    """AES-256-GCM (the mirror's default cipher) bytes/s on one core, 1 MiB chunks."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    cipher, piece, nonce = AESGCM(os.urandom(32)), os.urandom(1 << 20), os.urandom(12)

    def work() -> int:
        for _ in range(size >> 20):
            cipher.encrypt(nonce, piece, None)
        return size

    return _rate(work)


def relay_rate(size: int) -> float:
    """Bytes/s through a user-space loopback relay: a sender, a relay copying 1 MiB reads from
    one TCP socket to another, and a sink (what any proxy's cold path does at the least)."""

    def work() -> int:
        with (
            socket.create_server(("127.0.0.1", 0)) as a,
            socket.create_server(("127.0.0.1", 0)) as b,
        ):
            src = socket.create_connection(a.getsockname())
            relay_in, _ = a.accept()
            relay_out = socket.create_connection(b.getsockname())
            sink, _ = b.accept()
            piece = memoryview(bytearray(1 << 20))

            def send() -> None:
                for _ in range(size >> 20):
                    src.sendall(piece)
                src.close()

            def relay() -> None:
                buf = memoryview(bytearray(1 << 20))
                while n := relay_in.recv_into(buf):
                    relay_out.sendall(buf[:n])
                relay_out.close()

            threads = [threading.Thread(target=send), threading.Thread(target=relay)]
            for t in threads:
                t.start()
            got, buf = 0, memoryview(bytearray(1 << 20))
            while n := sink.recv_into(buf):
                got += n
            for t in threads:
                t.join()
            for s in (relay_in, sink):
                s.close()
            return got

    return _rate(work, 2)


def limits(size: int, sendfile_rate: Callable[[], float]) -> dict[str, float]:
    """The machine's own limits in this run, in bytes/s: sha256 and AEAD on one core, a
    loopback relay, and nginx ``sendfile`` (``sendfile_rate``: best of its pulls)."""
    return {
        "sha256, one core": sha256_rate(size),
        "AES-256-GCM, one core": aead_rate(size),
        "loopback relay (user space)": relay_rate(size),
        "nginx sendfile": sendfile_rate(),
    }
