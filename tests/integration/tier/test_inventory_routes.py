"""The replicas' ``/_tier/inventory`` and ``/_tier/proof/<digest>`` routes on an in-process
replica: signed requests only; an inventory lists hosted copies only (cached blobs are the
LRU's, never counted as copies); a proof is sha256 of the asker's nonce and the bytes held,
so a replica that does not hold the content cannot answer it."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from mirror.app.build import build_app
from mirror.clock import SystemClock
from mirror.config import load_config
from mirror.oci.digest import Digest
from mirror.tier.peer import inventory_url, proof_url
from mirror.tier.signing import HEADER, PeerSigner
from mirror.web.keys import CACHE
from tests.peers.ports import free_port

pytestmark = pytest.mark.integration

SECRET = random.Random(5).randbytes(24).hex().encode()


@pytest.fixture
async def replica(aiohttp_server: Any, tmp_path: Path) -> TestServer:
    """One in-process replica of a three-replica tier (the other two are not running)."""
    ports = [free_port() for _ in range(3)]
    (tmp_path / "secret").write_bytes(SECRET)
    config = load_config(
        overrides={
            "storage": {"data_dir": str(tmp_path / "data"), "chunk_size": 65536},
            "encryption": {"kek_file": str(tmp_path / "kek")},
            "upstreams": [{"host": "upstream.invalid", "url": "http://127.0.0.1:9"}],
            "default_upstream": "upstream.invalid",
            "tier": {
                "replicas": [f"http://127.0.0.1:{p}" for p in ports],
                "self": f"http://127.0.0.1:{ports[0]}",
                "secret_file": str(tmp_path / "secret"),
                "repair_interval": 3600.0,
            },
        },
        environ={},
    )
    server: TestServer = await aiohttp_server(build_app(config), host="127.0.0.1", port=ports[0])
    return server


def base(server: TestServer) -> URL:
    return URL(f"http://127.0.0.1:{server.port}")


def signed(url: URL, secret: bytes = SECRET) -> dict[str, str]:
    return {HEADER: PeerSigner(secret, SystemClock()).sign("GET", url.raw_path_qs, "127.0.0.1:1")}


async def a_cached_blob(server: TestServer) -> tuple[Digest, bytes]:
    data = os.urandom(100_000)
    digest = Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())
    await server.app[CACHE].put(digest, data)
    return digest, data


async def test_a_proof_is_the_hash_of_the_nonce_and_the_bytes_held(replica: TestServer) -> None:
    digest, data = await a_cached_blob(replica)
    nonce = os.urandom(32)
    url = proof_url(base(replica), digest, nonce)
    async with aiohttp.ClientSession() as session, session.get(url, headers=signed(url)) as resp:
        assert resp.status == 200
        assert (await resp.text()) == hashlib.sha256(nonce + data).hexdigest()
    other = os.urandom(32)
    url = proof_url(base(replica), digest, other)
    async with aiohttp.ClientSession() as session, session.get(url, headers=signed(url)) as resp:
        assert (await resp.text()) == hashlib.sha256(other + data).hexdigest()


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        pytest.param({"nonce": "ab" * 31}, 400, "REQUEST_INVALID", id="short-nonce"),
        pytest.param({"nonce": "zz" * 32}, 400, "REQUEST_INVALID", id="not-hex"),
        pytest.param({}, 400, "REQUEST_INVALID", id="no-nonce"),
    ],
)
async def test_a_proof_needs_a_nonce_of_32_bytes(
    replica: TestServer, query: dict[str, str], status: int, code: str
) -> None:
    digest, _ = await a_cached_blob(replica)
    url = proof_url(base(replica), digest, b"").with_query(query)
    async with aiohttp.ClientSession() as session, session.get(url, headers=signed(url)) as resp:
        assert resp.status == status
        assert (await resp.json())["errors"][0]["code"] == code


async def test_no_proof_of_a_blob_not_held(replica: TestServer) -> None:
    digest = Digest.parse("sha256:" + hashlib.sha256(b"elsewhere").hexdigest())
    url = proof_url(base(replica), digest, os.urandom(32))
    async with aiohttp.ClientSession() as session, session.get(url, headers=signed(url)) as resp:
        assert resp.status == 404
        assert (await resp.json())["errors"][0]["code"] == "BLOB_UNKNOWN"


async def test_cached_blobs_are_not_in_the_inventory(replica: TestServer) -> None:
    await a_cached_blob(replica)
    url = inventory_url(base(replica))
    async with aiohttp.ClientSession() as session, session.get(url, headers=signed(url)) as resp:
        assert resp.status == 200
        assert (await resp.text()) == ""


@pytest.mark.parametrize("route", ["inventory", "proof"])
@pytest.mark.parametrize("secret", [None, b"another-tier-secret-0123"], ids=["unsigned", "forged"])
async def test_the_routes_refuse_requests_not_signed_by_the_tier(
    replica: TestServer, route: str, secret: bytes | None
) -> None:
    digest, _ = await a_cached_blob(replica)
    if route == "inventory":
        url = inventory_url(base(replica))
    else:
        url = proof_url(base(replica), digest, os.urandom(32))
    headers = {} if secret is None else signed(url, secret)
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
