"""Zero-copy sending of a plaintext file range with the kernel's ``sendfile``.

uvloop's transports have no ``loop.sendfile`` (aiohttp's ``FileResponse`` falls back to copying
through user space), so the route sends the body itself once aiohttp wrote the headers and the
transport's buffer is empty: ``os.sendfile`` on the connection's socket, in a worker thread
(a page-cache miss blocks the thread, not the loop), and when the socket buffer is full it waits
for writability on a duplicate of the socket's descriptor (the transport owns the original).
Nothing else writes to the connection meanwhile: the handler owns it until it returns.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def settled(job: Awaitable[T]) -> T:
    """Await ``job`` (work in a thread); if the caller is cancelled, wait for the thread to
    finish first: it may still be using a buffer or a descriptor the caller is about to free."""
    future = asyncio.ensure_future(job)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.gather(future, return_exceptions=True)
        raise


async def drained(jobs: Iterable[Awaitable[object]]) -> None:
    """Wait until every one of ``jobs`` (work in threads) has finished, whatever it raised; a
    cancellation meanwhile is re-raised only after that: the jobs may still be using buffers
    or descriptors the caller is about to free."""
    pending = asyncio.gather(*jobs, return_exceptions=True)
    cancelled = False
    while not pending.done():
        try:
            await asyncio.shield(pending)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


# Most bytes one ``sendfile`` call is asked for (it returns earlier once the socket is full).
SENDFILE_STEP = 16 * 1024 * 1024


def socket_fd(transport: asyncio.BaseTransport | None) -> int | None:
    """The descriptor of a plain TCP connection's socket, or ``None`` (TLS, no socket, closed):
    only then can ``sendfile`` write the body."""
    if transport is None or transport.is_closing():
        return None
    if transport.get_extra_info("sslcontext") or transport.get_extra_info("ssl_object"):
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return None
    fd = sock.fileno()
    return fd if fd >= 0 else None


async def emptied(transport: asyncio.Transport) -> None:
    """Return once the transport has handed every buffered byte (the headers) to the kernel."""
    while transport.get_write_buffer_size() > 0:
        if transport.is_closing():
            raise ConnectionResetError("connection closed before the body")
        await asyncio.sleep(0.0005)


async def writable(fd: int) -> None:
    """Wait until the socket behind ``fd`` can take more bytes."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


async def send_file_range(
    transport: asyncio.Transport,
    sock_fd: int,
    file_fd: int,
    first: int,
    length: int,
    on_sent: Callable[[int], None] = lambda _n: None,
) -> int:
    """Send ``length`` bytes of ``file_fd`` from ``first`` on the connection; returns the bytes
    sent. Raises ``ConnectionResetError`` if the client goes away (the transport is aborted) and
    ``EOFError`` if the file ended early."""
    await emptied(transport)
    loop = asyncio.get_running_loop()
    dup = os.dup(sock_fd)
    offset, end = first, first + length
    try:
        while offset < end:
            step = min(SENDFILE_STEP, end - offset)
            job = loop.run_in_executor(None, os.sendfile, dup, file_fd, offset, step)
            try:
                sent = await settled(job)
            except asyncio.CancelledError:
                if not job.cancelled() and job.exception() is None:
                    on_sent(job.result())  # these went out before the cancel: counted
                raise
            except BlockingIOError:
                await writable(dup)
                continue
            except OSError as exc:
                transport.abort()
                raise ConnectionResetError(f"client went away: {exc}") from exc
            if sent == 0:
                raise EOFError(f"file ended at {offset}, expected {end}")
            offset += sent
            on_sent(sent)
    finally:
        os.close(dup)
    return offset - first
