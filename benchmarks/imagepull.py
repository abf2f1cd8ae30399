"""``python -m benchmarks.imagepull``: ``--clients`` concurrent whole-image pulls, each as a
registry client does it (the manifest by tag, then every blob in turn, on its own keep-alive
connection); prints a JSON summary (wall time, its own CPU time, bytes, bad blobs). With
``--verify`` every body is hashed and compared with its digest; without, its length with the
descriptor's size."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field

import aiohttp

MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json"
READ = 1024 * 1024


@dataclass
class Tally:
    """What every client together received."""

    bytes: int = 0
    blobs: int = 0
    bad: list[str] = field(default_factory=list)


async def _blob(
    session: aiohttp.ClientSession, url: str, digest: str, size: int, verify: bool, tally: Tally
) -> None:
    hasher = hashlib.sha256() if verify else None
    got = 0
    async with session.get(url) as resp:
        if resp.status != 200:
            tally.bad.append(f"{digest}: HTTP {resp.status}")
            return
        async for piece in resp.content.iter_chunked(READ):
            got += len(piece)
            if hasher is not None:
                hasher.update(piece)
    tally.bytes += got
    tally.blobs += 1
    if got != size or (hasher is not None and f"sha256:{hasher.hexdigest()}" != digest):
        tally.bad.append(f"{digest}: {got} bytes, wrong content")


async def _client(base: str, repo: str, tag: str, verify: bool, tally: Tally) -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"{base}/v2/{repo}/manifests/{tag}"
        async with session.get(url, headers={"Accept": MANIFEST_TYPES}) as resp:
            if resp.status != 200:
                tally.bad.append(f"manifest: HTTP {resp.status}")
                return
            manifest = json.loads(await resp.read())
        for desc in [manifest["config"], *manifest["layers"]]:
            blob_url = f"{base}/v2/{repo}/blobs/{desc['digest']}"
            await _blob(session, blob_url, desc["digest"], desc["size"], verify, tally)


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Start every client at once; the summary once the last one is done."""
    tally = Tally()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(
        *(_client(args.base, args.repo, args.tag, args.verify, tally) for _ in range(args.clients))
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "wall": wall,
        "cpu": cpu,
        "bytes": tally.bytes,
        "blobs": tally.blobs,
        "bad": tally.bad[:20],
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, pull, print the JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.imagepull")
    parser.add_argument("--base", required=True, help="registry URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--verify", action="store_true", help="hash every body")
    args = parser.parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
