"""``mirror retention run`` without a server opens the cache the way the server does: on an
encrypted cache its report, audit log and metrics count plaintext bytes, as the server's do."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from mirror.app.build import build_app
from mirror.cli.main import main
from mirror.config import load_config
from mirror.oci.media import OCI_MANIFEST
from mirror.testing.images import BuiltImage, build_image, random_layer
from mirror.testing.registry import InProcessRegistry, RegistryContent

REPO = "team/app"


def config_text(data_dir: Path, origin: str, kek: Path) -> str:
    """A mirror in front of ``origin`` whose one policy selects every image of ``REPO`` now."""
    host = origin.removeprefix("http://")
    return (
        f'default_upstream = "{host}"\n'
        f'[storage]\ndata_dir = "{data_dir}"\n'
        f'[encryption]\nkek_file = "{kek}"\n'
        f'[[upstreams]]\nhost = "{host}"\nurl = "{origin}"\n'
        f"[retention]\ninterval = 0\ncooling_period = 0\n"
        f'[[retention.policies]]\nname = "everything"\nnot_pulled_days = 0\n'
        f'repositories = ["{host}/{REPO}"]\n'
    )


async def pull_through(config_file: Path, image: BuiltImage) -> None:
    """Pull ``REPO:v1`` (manifest and every blob) through a mirror, then stop it."""
    server = TestServer(build_app(load_config(config_file, environ={})), host="127.0.0.1")
    await server.start_server()
    host = load_config(config_file, environ={}).upstreams[0].host
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as http:
            path = f"/v2/{host}/{REPO}"
            async with http.get(f"{path}/manifests/v1", headers={"Accept": OCI_MANIFEST}) as r:
                assert r.status == 200
            for blob in image.blobs():
                async with http.get(f"{path}/blobs/{blob.digest}") as r:
                    assert await r.read() == blob.read_bytes()
    finally:
        await server.close()


def test_offline_run_on_an_encrypted_cache_counts_plaintext_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(9)
    image = build_image(tmp_path / "layout", "v1", [random_layer(rng, 3000) for _ in range(2)])
    content = RegistryContent()
    content.add_image(REPO, image)
    config_file = tmp_path / "mirror.toml"
    data_dir = tmp_path / "data"

    async def cache_it() -> None:
        async with InProcessRegistry(content).serve() as origin:
            config_file.write_text(config_text(data_dir, origin, tmp_path / "kek"))
            await pull_through(config_file, image)

    asyncio.run(cache_it())
    objects = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    plain = {blob.digest: blob.size for blob in image.blobs()}
    plain[image.manifest_digest] = image.manifest.size
    assert len(objects) == len(plain)
    assert all(p.stat().st_size != plain[f"sha256:{p.name}"] for p in objects), "encrypted"

    capsys.readouterr()
    assert main(["retention", "--config", str(config_file), "run"]) == 0
    out = capsys.readouterr().out

    audit = [
        json.loads(line)
        for line in (data_dir / "retention" / "audit.jsonl").read_text().splitlines()
    ]
    deleted = {e["digest"]: e["size"] for e in audit if e["event"].startswith("delete-")}
    assert deleted == plain
    assert f"{len(plain)} objects deleted, {sum(plain.values())} bytes freed" in out
