"""The chunked ``Range`` client of scenario 3 (``benchmarks.clients.ranged_pull``): every
piece 206 and exact, assembled in order, and the time its first wave completed (the first
``workers`` pieces, which a mirror holds until the fill verified) reported apart."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.clients import ranged_pull

PIECE = 64 * 1024
WORKERS = 4
DATA = os.urandom(12 * PIECE + 100)
HOLD = 0.3


class _Ranges(BaseHTTPRequestHandler):
    """Answers ``Range: bytes=a-b`` of ``DATA``; the first wave only after ``HOLD`` seconds
    (as a mirror releases it once the blob verified), the rest at once."""

    protocol_version = "HTTP/1.1"
    opened = 0.0

    def do_GET(self) -> None:
        first, _, last = self.headers["Range"].removeprefix("bytes=").partition("-")
        start, end = int(first), int(last)
        if start < WORKERS * PIECE:
            time.sleep(max(0.0, _Ranges.opened + HOLD - time.monotonic()))
        body = DATA[start : end + 1]
        self.send_response(206)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(DATA)}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ranges)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Ranges.opened = time.monotonic()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/r/blobs/x"
    finally:
        server.shutdown()
        server.server_close()


def test_pieces_assemble_in_order_and_the_first_wave_is_timed_apart(url: str) -> None:
    pull = ranged_pull(url, len(DATA), PIECE, WORKERS, timeout=30)

    assert pull.digest == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert pull.first_wave >= HOLD * 0.9
    # The other nine pieces took far less than the wait for the first wave.
    assert pull.first_wave <= pull.seconds < pull.first_wave + HOLD


def test_a_piece_of_the_wrong_length_fails_the_pull(url: str) -> None:
    with pytest.raises(RuntimeError, match="ranged pull failed"):
        ranged_pull(url, len(DATA) + PIECE, PIECE, WORKERS, timeout=30)
