"""``python -m benchmarks.cold_floor``: CPU seconds per GiB, in one process, of each part a cold
encrypted fill cannot avoid: sha256, AES-256-GCM sealing, the write into the page cache, and a
loopback receive and send (what the mirror's CPU per GiB is to be compared with)."""

from __future__ import annotations

import hashlib
import os
import resource
import socket
import tempfile
import threading
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

GIB = 1 << 30
PIECE = 4 << 20


def thread_cpu() -> float:
    """User + system CPU seconds of the calling thread."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def timed(step: Callable[[], object], count: int = 1) -> float:
    """CPU seconds of the calling thread that ``count`` calls of ``step`` took."""
    start = thread_cpu()
    for _ in range(count):
        step()
    return thread_cpu() - start


def _loopback(size: int, piece: bytes) -> tuple[float, float]:
    """CPU seconds to receive, then to send, ``size`` bytes over loopback TCP (the other end in
    a thread of its own, not counted)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    count = size // len(piece)

    def send() -> None:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            for _ in range(count):
                conn.sendall(piece)

    def drain(conn: socket.socket) -> None:
        buffer = bytearray(1 << 20)
        while conn.recv_into(buffer):
            pass

    sender = threading.Thread(target=send)
    sender.start()
    conn, _ = server.accept()
    received = timed(lambda: drain(conn))
    sender.join()
    conn.close()
    out = socket.create_connection(("127.0.0.1", port))
    peer, _ = server.accept()
    sink = threading.Thread(target=drain, args=(peer,))
    sink.start()
    sent = timed(lambda: out.sendall(piece), count)
    out.close()
    sink.join()
    peer.close()
    server.close()
    return received, sent


def measure(size: int = GIB, directory: str | None = None) -> dict[str, float]:
    """CPU seconds per GiB of each unavoidable part of a cold encrypted fill."""
    piece = os.urandom(PIECE)
    count = size // PIECE
    hasher = hashlib.sha256()
    cipher = AESGCM(os.urandom(32))
    sealed = bytearray(PIECE + 16)
    nonce = bytes(12)
    parts = {
        "sha256": timed(lambda: hasher.update(piece), count),
        "AES-256-GCM seal (encrypt_into)": timed(
            lambda: cipher.encrypt_into(nonce, piece, b"", sealed), count
        ),
    }
    fd, path = tempfile.mkstemp(dir=directory)
    try:
        offsets = iter(range(0, count * len(sealed), len(sealed)))
        parts["pwrite into the page cache"] = timed(
            lambda: os.pwrite(fd, sealed, next(offsets)), count
        )
    finally:
        os.close(fd)
        os.unlink(path)
    parts["loopback receive"], parts["loopback send"] = _loopback(size, piece)
    return {name: seconds * GIB / size for name, seconds in parts.items()}


def main() -> None:
    """Print each part and their sum, with the load average."""
    parts = measure()
    for name, seconds in parts.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"| sum | {sum(parts.values()):.2f} |")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
