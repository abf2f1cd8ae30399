"""A discard server that speaks just enough of the push API to measure the push client's own
ceiling: ``POST``/``PATCH`` answer ``202`` with a ``Location``, ``PUT`` ``201``, anything else
``200``; request bodies (``Content-Length`` framed) are counted and dropped.

``python -m benchmarks.sink --port P`` serves on 127.0.0.1 until terminated (uvloop when
installed). A raw :class:`asyncio.Protocol` so that the server costs next to nothing per byte.
"""

from __future__ import annotations

import argparse
import asyncio

_ANSWERS = {
    b"POST": b"HTTP/1.1 202 Accepted\r\nLocation: /v2/sink/blobs/uploads/s\r\n",
    b"PATCH": b"HTTP/1.1 202 Accepted\r\nLocation: /v2/sink/blobs/uploads/s\r\n",
    b"PUT": b"HTTP/1.1 201 Created\r\nLocation: /v2/sink/blobs/d\r\n",
}
_OK = b"HTTP/1.1 200 OK\r\n"


def answer(method: bytes) -> bytes:
    """The whole response to a request with ``method`` (no body, keep-alive)."""
    return _ANSWERS.get(method, _OK) + b"Content-Length: 0\r\n\r\n"


class SinkProtocol(asyncio.Protocol):
    """One connection: parse a request head, drop ``Content-Length`` bytes, answer, repeat."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.head = b""
        self.left = 0
        self.method = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.left:
                take = min(self.left, len(view))
                self.left -= take
                view = view[take:]
                if not self.left:
                    self._answer()
                continue
            self.head += bytes(view)
            view = memoryview(b"")
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self.head[:end], self.head[end + 4 :]
            self.head = b""
            self.method = head.split(b" ", 1)[0]
            self.left = _content_length(head)
            if not self.left:
                self._answer()
            view = memoryview(rest)

    def _answer(self) -> None:
        assert self.transport is not None
        self.transport.write(answer(self.method))


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:``port`` forever."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Parse ``--port`` and serve."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.sink", description=__doc__)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port))
    else:
        uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
