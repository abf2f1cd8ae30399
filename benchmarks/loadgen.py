"""A keep-alive HTTP/1.1 load generator, run as its own process so it never shares an event
loop (or a GIL) with a server under test.

``python -m benchmarks.loadgen --url URL [--method HEAD] [--header 'K: V'] --connections 16
--duration 2`` prints one JSON object: requests, errors, statuses, elapsed seconds, requests/s,
latency percentiles (ms) and 101 latency quantiles for CDF plots. Requests are written by hand
and responses parsed minimally (Content-Length or chunked), so the client costs only a few tens
of microseconds per request and HEAD works like GET.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_REQUESTS = 2_000_000
# What the load generator's requests say they are (a registry's log tells them apart).
USER_AGENT = "mirror-bench-loadgen"


@dataclass
class Tally:
    """Results shared by the connections of one run."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return
    else:
        await reader.read()


async def _connection(
    host: str,
    port: int,
    request: bytes,
    head: bool,
    start_at: float,
    stop_at: float,
    tally: Tally,
) -> None:
    """One keep-alive connection sending requests back to back until ``stop_at``; latencies
    of requests sent before ``start_at`` (the warm-up) are not recorded."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (now := time.perf_counter()) < stop_at and len(tally.latencies) < MAX_REQUESTS:
            writer.write(request)
            status_line = await reader.readuntil(b"\r\n")
            status = int(status_line.split(b" ", 2)[1])
            raw = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in raw.decode("latin-1").split("\r\n"):
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if not head and status != 204 and status != 304:
                await _read_body(reader, headers)
            done = time.perf_counter()
            if now >= start_at:
                tally.latencies.append(done - now)
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                if status >= 400:
                    tally.errors += 1
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


def build_request(method: str, path: str, host: str, headers: list[str]) -> bytes:
    """The request bytes, sent unchanged on every iteration."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
    lines += headers
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def summarise(tally: Tally, elapsed: float) -> dict[str, object]:
    """Counts, requests/s and latency percentiles in milliseconds."""
    lat = sorted(tally.latencies)
    n = len(lat)

    def pct(p: float) -> float:
        return lat[min(n - 1, int(p / 100 * n))] * 1000 if n else float("nan")

    return {
        "requests": n,
        "errors": tally.errors,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "elapsed": elapsed,
        "rps": n / elapsed if elapsed > 0 else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": lat[-1] * 1000 if n else float("nan"),
        "mean_ms": statistics.fmean(lat) * 1000 if n else float("nan"),
        "quantiles_ms": [pct(q) for q in range(101)] if n else [],
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Open the connections, run for ``duration`` after ``warmup``, summarise."""
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = url.path + (f"?{url.query}" if url.query else "")
    request = build_request(args.method, path, url.netloc, args.header)
    tally = Tally()
    start_at = time.perf_counter() + args.warmup
    stop_at = start_at + args.duration
    tasks = [
        _connection(host, port, request, args.method == "HEAD", start_at, stop_at, tally)
        for _ in range(args.connections)
    ]
    await asyncio.gather(*tasks)
    return summarise(tally, time.perf_counter() - start_at)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print the JSON summary on stdout."""
    top = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__)
    top.add_argument("--url", required=True)
    top.add_argument("--method", default="GET")
    top.add_argument("--header", action="append", default=[], help="'Name: value'")
    top.add_argument("--connections", type=int, default=1)
    top.add_argument("--duration", type=float, default=2.0)
    top.add_argument("--warmup", type=float, default=0.3)
    args = top.parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
