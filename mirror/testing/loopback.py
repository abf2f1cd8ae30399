"""Serving an in-process aiohttp application on 127.0.0.1, for as long as a context lasts."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


def loopback_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound to ``port`` (or a free port) of 127.0.0.1."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    return listener


@asynccontextmanager
async def serve_on_loopback(
    app: web.Application, listener: socket.socket | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on ``listener`` (or a free port of 127.0.0.1) without an access log;
    yields the base URL and cleans the app up (and closes the socket) when the context ends."""
    listener = listener or loopback_socket()
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
        await web.SockSite(runner, listener).start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        await runner.cleanup()
        listener.close()
