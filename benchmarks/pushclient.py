"""A blob-push client (OCI distribution "Pushing blobs"), run as its own process so it never
shares an event loop or a GIL with the harness or a server under test.

``python -m benchmarks.pushclient --url URL --repo NAME --size BYTES [--chunk BYTES]
[--concurrency N] [--login TENANCY/USER --token-file F]`` pushes ``N`` distinct blobs of
``--size`` bytes at once and prints one JSON object: per push the seconds from the ``POST`` to
the final ``PUT``'s ``201`` (and of that ``PUT`` alone), the wall time of all, and how many
the registry then answered ``HEAD`` for with the right size. ``--chunk 0`` is a monolithic
upload (``POST``, then one ``PUT ?digest=`` with the body); otherwise ``PATCH`` chunks with
``Content-Range`` and an empty final ``PUT``.

Bodies are never held whole: a blob is a preallocated random block repeated (the first block
salted so every push has its own digest), sent piece by piece with a ``Content-Length``. The
digest is computed before the clock starts. With ``--login`` it logs in the way ``docker``
does: the ``401``'s Bearer challenge, then the token realm with Basic credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

BLOCK = 1024 * 1024
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class SyntheticBlob:
    """``size`` bytes: ``first`` then ``block`` repeated, cut at ``size``; never materialised."""

    first: bytes
    block: bytes
    size: int

    @classmethod
    def make(cls, size: int, salt: int, block: bytes) -> SyntheticBlob:
        """A blob whose first block starts with ``salt`` (so digests differ per push)."""
        stamp = f"push {salt:016d}\n".encode()
        return cls(stamp + block[len(stamp) :], block, size)

    def pieces(self, start: int, length: int) -> Iterator[bytes]:
        """The bytes ``[start, start + length)`` in pieces of at most one block (whole
        blocks are the preallocated objects themselves, nothing copied)."""
        n = len(self.block)
        pos, end = start, min(start + length, self.size)
        while pos < end:
            index, within = divmod(pos, n)
            source = self.first if index == 0 else self.block
            take = min(n - within, end - pos)
            yield source if (within == 0 and take == n) else source[within : within + take]
            pos += take

    def digest(self) -> str:
        """``sha256:<hex>`` of the whole blob (streamed)."""
        h = hashlib.sha256()
        for piece in self.pieces(0, self.size):
            h.update(piece)
        return f"sha256:{h.hexdigest()}"


async def _stream(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def bearer_headers(
    http: aiohttp.ClientSession, base: str, repo: str, login: str, token: str
) -> dict[str, str]:
    """``Authorization`` for pushing to ``repo``: follow the ``/v2/`` challenge like docker."""
    basic = aiohttp.BasicAuth(login, token)
    async with http.get(f"{base}/v2/") as resp:
        await resp.read()
        challenge = resp.headers.get("WWW-Authenticate", "")
    if not challenge.lower().startswith("bearer"):
        return {"Authorization": basic.encode()}
    params = dict(_CHALLENGE.findall(challenge))
    query = {"service": params.get("service", ""), "scope": f"repository:{repo}:push,pull"}
    async with http.get(params["realm"], params=query, auth=basic) as resp:
        resp.raise_for_status()
        doc = await resp.json()
    return {"Authorization": f"Bearer {doc.get('token') or doc['access_token']}"}


class PushFailed(RuntimeError):
    """The registry answered something other than the spec's status."""


async def _expect(resp: aiohttp.ClientResponse, status: int, what: str) -> str:
    body = await resp.read()
    if resp.status != status:
        raise PushFailed(f"{what}: {resp.status} {body[:300]!r}")
    return urljoin(str(resp.url), resp.headers.get("Location", ""))


async def push(
    http: aiohttp.ClientSession,
    base: str,
    repo: str,
    blob: SyntheticBlob,
    digest: str,
    chunk: int,
    auth: dict[str, str],
) -> tuple[float, float]:
    """One upload (monolithic when ``chunk`` is 0): the seconds it took, and those of the
    final ``PUT`` alone (with chunks: the registry's commit)."""
    started = time.perf_counter()
    async with http.post(f"{base}/v2/{repo}/blobs/uploads/", headers=auth) as resp:
        location = await _expect(resp, 202, "POST")
    offset = 0
    while chunk and offset < blob.size:
        n = min(chunk, blob.size - offset)
        headers = {
            **auth,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(n),
            "Content-Range": f"{offset}-{offset + n - 1}",
        }
        body = _stream(blob.pieces(offset, n))
        async with http.patch(location, data=body, headers=headers) as resp:
            location = await _expect(resp, 202, f"PATCH at {offset}")
        offset += n
    put_len = 0 if chunk else blob.size
    headers = {**auth, "Content-Type": "application/octet-stream", "Content-Length": str(put_len)}
    sep = "&" if "?" in location else "?"
    body = _stream(blob.pieces(0, put_len))
    last = time.perf_counter()
    async with http.put(f"{location}{sep}digest={digest}", data=body, headers=headers) as resp:
        await _expect(resp, 201, "PUT")
    done = time.perf_counter()
    return done - started, done - last


async def stored(
    http: aiohttp.ClientSession, base: str, repo: str, digest: str, size: int, auth: dict[str, str]
) -> bool:
    """Whether ``HEAD`` of the blob answers 200 with ``size`` bytes."""
    async with http.head(f"{base}/v2/{repo}/blobs/{digest}", headers=auth) as resp:
        return resp.status == 200 and resp.headers.get("Content-Length") == str(size)


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Push ``concurrency`` blobs at once; the JSON summary."""
    block = hashlib.shake_256(b"mirror push benchmark").digest(min(BLOCK, args.size))
    blobs = [SyntheticBlob.make(args.size, args.salt + i, block) for i in range(args.concurrency)]
    digests = [b.digest() for b in blobs]
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        auth: dict[str, str] = {}
        if args.login:
            auth = await bearer_headers(http, args.url, args.repo, args.login, args.token)
        started = time.perf_counter()
        timings = await asyncio.gather(
            *(
                push(http, args.url, args.repo, b, d, args.chunk, auth)
                for b, d in zip(blobs, digests, strict=True)
            )
        )
        wall = time.perf_counter() - started
        verified = 0
        if not args.no_verify:
            checks = [stored(http, args.url, args.repo, d, args.size, auth) for d in digests]
            verified = sum(await asyncio.gather(*checks))
    return {
        "pushes": [{"seconds": s, "last_put": p, "bytes": args.size} for s, p in timings],
        "wall": wall,
        "verified": verified,
        "digests": digests,
    }


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.pushclient", description=__doc__)
    p.add_argument("--url", required=True, help="registry base URL, e.g. http://127.0.0.1:5000")
    p.add_argument("--repo", required=True)
    p.add_argument("--size", type=int, required=True, help="bytes per blob")
    p.add_argument("--chunk", type=int, default=0, help="PATCH chunk size (0: monolithic)")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--salt", type=int, default=0, help="first salt (distinct blobs per run)")
    p.add_argument("--login", help="TENANCY/USER (with --token-file)")
    p.add_argument("--token-file", help="file holding the auth token")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--no-verify", action="store_true", help="skip the HEAD after the push")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run and print the JSON summary; exit 1 on a push the registry refused."""
    args = parser().parse_args(argv)
    args.token = Path(args.token_file).read_text().strip() if args.login else ""
    try:
        print(json.dumps(asyncio.run(run(args))))
    except (PushFailed, aiohttp.ClientError) as exc:
        print(f"push failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
