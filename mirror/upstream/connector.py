"""The session's connector under a connection cap: the cap counts the upstream's sockets, from
connect until the socket is really closed, not requests.

aiohttp frees a connection's place in its ``limit`` (and the limiter's slot is given back) the
moment it *asks* to close a connection, but the event loop closes the socket later: asyncio's
and uvloop's transports close it in ``connection_lost``, one loop iteration later, and a TLS
transport first exchanges ``close_notify`` with the peer (an RTT, or up to its shutdown
timeout when the peer never answers). A request that took the freed place at once opened its
socket while the old one was still open, so the upstream saw more connections than the cap
(``tests/unit/upstream/test_connection_cap.py``). Here a new socket to the upstream waits for a
place that a socket frees only when aiohttp's protocol has seen ``connection_lost``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.tracing import Trace
from yarl import URL


class SocketGate:
    """At most ``capacity`` sockets open at once; ``open`` and ``peak`` say how many are."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.open = 0
        self.peak = 0
        self._free = asyncio.Semaphore(capacity)

    async def enter(self) -> None:
        """Wait for a place for one more socket."""
        await self._free.acquire()
        self.open += 1
        self.peak = max(self.peak, self.open)

    def leave(self) -> None:
        """A socket is closed (or was never opened): its place is free."""
        self.open -= 1
        self._free.release()


class CappedConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` whose sockets to ``origin`` pass ``gate`` from connect to close
    (other origins, such as redirect targets, are not the upstream and are not counted)."""

    def __init__(self, origin: URL, gate: SocketGate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.origin = origin.origin()
        self.gate = gate

    # aiohttp's signature (hence ``timeout``).
    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> ResponseHandler:
        if req.url.origin() != self.origin:
            return await super()._create_connection(req, traces, timeout)
        await self.gate.enter()
        try:
            proto = await super()._create_connection(req, traces, timeout)
        except BaseException:
            self.gate.leave()
            raise
        closed = proto.closed
        if closed is None:  # already lost: nothing is open
            self.gate.leave()
        else:
            closed.add_done_callback(self._socket_closed)
        return proto

    def _socket_closed(self, closed: asyncio.Future[None]) -> None:
        if not closed.cancelled():
            closed.exception()  # a connection lost with an error: retrieved, nobody else asks
        self.gate.leave()
