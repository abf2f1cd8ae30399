"""One request to the mirror under test, bounded by a timeout, reduced to what the checks
judge: status, headers, body, whether the body was cut, and how long it took."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy


@dataclass
class Answer:
    """What came back; ``status`` is ``None`` when no response arrived (``failure`` says why),
    ``cut`` is true when the body ended early."""

    status: int | None
    headers: CIMultiDictProxy[str] | None
    body: bytes
    cut: bool
    elapsed: float
    failure: str = ""

    def header(self, name: str) -> str | None:
        """A response header, or ``None``."""
        return None if self.headers is None else self.headers.get(name)

    def brief(self) -> str:
        """``status`` (plus ``cut`` or the failure) for evidence."""
        if self.status is None:
            return f"no answer ({self.failure})"
        return f"{self.status}{' cut' if self.cut else ''}"


async def fetch(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    seconds: float,
    read_bytes: int | None = None,
) -> Answer:
    """Send one request and read the body (or only ``read_bytes`` of it, then drop the
    connection); never raises for network failures or timeouts."""
    started = time.monotonic()
    body = bytearray()
    status: int | None = None
    answer_headers: CIMultiDictProxy[str] | None = None
    try:
        async with asyncio.timeout(seconds):
            async with http.request(method, url, headers=headers, allow_redirects=False) as resp:
                status, answer_headers = resp.status, resp.headers
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if read_bytes is not None and len(body) >= read_bytes:
                        resp.close()
                        break
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as error:
        return Answer(status, answer_headers, bytes(body), True, _since(started), str(error))
    except (aiohttp.ClientError, TimeoutError) as error:
        failure = type(error).__name__ if isinstance(error, TimeoutError) else str(error)
        cut = status is not None
        return Answer(status, answer_headers, bytes(body), cut, _since(started), failure)
    return Answer(status, answer_headers, bytes(body), False, _since(started))


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
