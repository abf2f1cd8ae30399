"""Encryption at rest, end to end: nothing readable on disk, tampering detected and healed,
ranges across chunks, key rotation under load, key errors at start-up, crash safety."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.crypto.envelope import HEADER_SIZE, TAG_SIZE
from mirror.oci.digest import Digest
from tests.peers.factory import ImageFactory
from tests.peers.ports import free_port
from tests.peers.skopeo import skopeo_copy_async

from .conftest import Mirror, MirrorFactory
from .fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

FAKE_HOST = "fake.test"
CHUNK = 4096
MARKER = b"\x00PLANTED-PLAINTEXT-MARKER-7f3a9c\x00"


def everything_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def run_mirror(*args: str, kek_file: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIRROR_ENCRYPTION_KEK_FILE": str(kek_file)}
    return subprocess.run(
        [sys.executable, "-m", "mirror", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


async def run_mirror_async(*args: str, kek_file: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIRROR_ENCRYPTION_KEK_FILE": str(kek_file)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirror", *args, env=env, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def kek_file_of(mirror: Mirror) -> Path:
    return Path(mirror.config.encryption.kek_file)


async def fetch(url: str, **kwargs: Any) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, **kwargs) as resp:
            return resp.status, await resp.read(), dict(resp.headers)


@pytest.fixture
async def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
async def fake_url(aiohttp_server: Any, fake: FakeUpstream) -> str:
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def encrypted(mirror_factory: MirrorFactory, fake_url: str) -> Mirror:
    """A mirror in front of the fake upstream with 4 KiB chunks, so blobs span many."""
    return await mirror_factory({FAKE_HOST: fake_url}, encryption={"chunk_size": CHUNK})


# Nothing readable on disk ----------------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False], ids=["encrypted", "plaintext-control"])
async def test_no_planted_plaintext_anywhere_under_the_data_dir(
    mirror_factory: MirrorFactory,
    upstream_registry: Any,
    image_factory: ImageFactory,
    tmp_path: Path,
    enabled: bool,
) -> None:
    mirror = await mirror_factory(
        {upstream_registry.host: upstream_registry.url}, encryption={"enabled": enabled}
    )
    pushed = image_factory.push("v1", layers=3, layer_size=150_000, marker=MARKER)
    out = tmp_path / "pulled"
    await skopeo_copy_async(
        f"docker://{mirror.host}/{pushed.repo}:v1", f"dir:{out}", "--src-tls-verify=false"
    )
    manifest = json.loads((out / "manifest.json").read_bytes())
    secrets = [(out / "manifest.json").read_bytes(), pushed.image.config.read_bytes()]
    for layer in manifest["layers"]:
        blob = (out / layer["digest"].split(":")[1]).read_bytes()
        assert MARKER in gzip.decompress(blob)  # planted in the layer's content
        # skopeo compressed the layers on push: the blob bytes are the layer's plaintext.
        secrets += [MARKER, blob[:64], blob[len(blob) // 2 : len(blob) // 2 + 64], blob[-64:]]

    on_disk = everything_under(mirror.data_dir)
    if enabled:
        assert len(mirror.cached_blob_files()) == 5  # manifest, config, three layers
        for secret in secrets:
            assert secret not in on_disk
        assert b'"schemaVersion"' not in on_disk
    else:
        # The scan would have found them: the plaintext store holds them verbatim.
        assert all(secret in on_disk for secret in secrets if secret != MARKER)


# Tampering -------------------------------------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def swap(a: Path, b: Path) -> None:
    raw_a, raw_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(raw_b)
    b.write_bytes(raw_a)


def path_of(mirror: Mirror, digest: str) -> Path:
    parsed = Digest.parse(digest)
    return mirror.data_dir / "blobs" / parsed.algorithm / parsed.encoded[:2] / parsed.encoded


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap"])
async def test_tampered_blob_is_never_served_but_evicted_and_refetched(
    encrypted: Mirror, fake: FakeUpstream, damage: str
) -> None:
    one, two = os.urandom(20_000), os.urandom(20_000)
    d1, d2 = fake.add_blob(one), fake.add_blob(two)
    for digest in (d1, d2):
        assert (await fetch(f"{encrypted.url}/v2/team/app/blobs/{digest}"))[0] == 200
    if damage == "flip":
        flip(path_of(encrypted, d1), HEADER_SIZE + 10)
    elif damage == "truncate":
        os.truncate(path_of(encrypted, d1), HEADER_SIZE + 3 * (CHUNK + TAG_SIZE))
    else:
        swap(path_of(encrypted, d1), path_of(encrypted, d2))
    damaged = [d1, d2] if damage == "swap" else [d1]

    for digest, data in ((d1, one), (d2, two)):
        status, body, _ = await fetch(f"{encrypted.url}/v2/team/app/blobs/{digest}")
        assert status == 200 and body == data

    for digest in damaged:
        assert fake.count("GET", digest) == 2, "evicted and refetched once"
    assert encrypted.metric("mirror_corrupt_objects_total") == len(damaged)
    # Healed: the refetched copies are good and served warm from now on.
    assert (await fetch(f"{encrypted.url}/v2/team/app/blobs/{d1}"))[1] == one
    assert fake.count("GET", d1) == 2


async def test_a_bad_chunk_mid_blob_cuts_the_response_and_the_next_pull_refetches(
    encrypted: Mirror, fake: FakeUpstream
) -> None:
    data = os.urandom(1_000_000)  # 245 chunks; the mirror sends 64 KiB pieces
    digest = fake.add_blob(data)
    url = f"{encrypted.url}/v2/team/app/blobs/{digest}"
    assert (await fetch(url))[1] == data
    flip(path_of(encrypted, digest), HEADER_SIZE + 200 * (CHUNK + TAG_SIZE) + 1)

    with pytest.raises(aiohttp.ClientPayloadError):
        await fetch(url)

    assert not path_of(encrypted, digest).exists()
    assert encrypted.metric("mirror_corrupt_objects_total") == 1
    status, body, _ = await fetch(url)
    assert status == 200 and body == data
    assert fake.count("GET", digest) == 2


async def test_tampered_manifest_is_refetched(encrypted: Mirror, fake: FakeUpstream) -> None:
    digest, manifest = fake.add_image("team/app", "v1", [b"layer"])
    url = f"{encrypted.url}/v2/team/app/manifests/{digest}"
    assert (await fetch(url))[1] == manifest
    flip(path_of(encrypted, digest), HEADER_SIZE + 3)

    status, body, headers = await fetch(url)

    assert status == 200 and body == manifest
    assert headers["Docker-Content-Digest"] == digest
    assert fake.count("GET", f"manifests/{digest}") == 2
    assert encrypted.metric("mirror_corrupt_objects_total") == 1


async def test_cache_verify_reports_and_evicts_damage(
    encrypted: Mirror, fake: FakeUpstream
) -> None:
    blobs = [os.urandom(30_000) for _ in range(4)]
    digests = [fake.add_blob(b) for b in blobs]
    for digest in digests:
        assert (await fetch(f"{encrypted.url}/v2/team/app/blobs/{digest}"))[0] == 200
    flip(path_of(encrypted, digests[0]), HEADER_SIZE + 5 * (CHUNK + TAG_SIZE))
    os.truncate(path_of(encrypted, digests[1]), 1000)
    swap(path_of(encrypted, digests[2]), path_of(encrypted, digests[3]))
    data_dir = str(encrypted.data_dir)
    kek = kek_file_of(encrypted)

    done = await run_mirror_async("cache", "verify", "--data-dir", data_dir, kek_file=kek)

    assert done.returncode == 1, done.stderr
    for digest in digests:
        assert f"BAD {digest}" in done.stdout
        assert not path_of(encrypted, digest).exists()
    assert "verify: 4/4 objects" in done.stderr
    again = await run_mirror_async("cache", "verify", "--data-dir", data_dir, kek_file=kek)
    assert again.returncode == 0 and "verified 0 objects" in again.stdout
    for digest, data in zip(digests, blobs, strict=True):
        assert (await fetch(f"{encrypted.url}/v2/team/app/blobs/{digest}"))[1] == data


# Ranges ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", ["cold", "warm"])
async def test_range_reads_across_chunk_boundaries(
    encrypted: Mirror, fake: FakeUpstream, temperature: str
) -> None:
    data = os.urandom(5 * CHUNK + 123)
    digest = fake.add_blob(data)
    url = f"{encrypted.url}/v2/team/app/blobs/{digest}"
    if temperature == "warm":
        assert (await fetch(url))[1] == data
    size = len(data)
    cases = [
        ("bytes=0-0", 0, 0),
        (f"bytes={size - 1}-{size - 1}", size - 1, size - 1),
        (f"bytes={CHUNK - 1}-{CHUNK}", CHUNK - 1, CHUNK),
        (f"bytes={2 * CHUNK - 3}-{4 * CHUNK + 2}", 2 * CHUNK - 3, 4 * CHUNK + 2),
        (f"bytes={3 * CHUNK + 7}-", 3 * CHUNK + 7, size - 1),
    ]
    for header, first, last in cases:
        status, body, headers = await fetch(url, headers={"Range": header})
        assert status == 206, header
        assert body == data[first : last + 1], header
        assert headers["Content-Range"] == f"bytes {first}-{last}/{size}"


# Key rotation ----------------------------------------------------------------------------------


async def test_key_rotation_while_pulls_are_in_progress(
    encrypted: Mirror, fake: FakeUpstream
) -> None:
    fake.slow_chunk, fake.slow_delay = 16 * 1024, 0.02
    warm = [fake.add_blob(os.urandom(200_000)) for _ in range(6)]
    cold = [fake.add_blob(os.urandom(600_000)) for _ in range(6)]
    for digest in cold:
        fake.blob_mode[digest] = "slow"  # each fill takes ~0.75 s: they span the rotation
    for digest in warm:
        assert (await fetch(f"{encrypted.url}/v2/team/app/blobs/{digest}"))[0] == 200
    data_dir, kek = str(encrypted.data_dir), kek_file_of(encrypted)
    before = await run_mirror_async("keys", "list", "--data-dir", data_dir, kek_file=kek)
    old_id = before.stdout.split(" ")[0].rstrip(":")

    async def pull(digest: str) -> None:
        status, body, _ = await fetch(f"{encrypted.url}/v2/team/app/blobs/{digest}")
        assert status == 200 and body == fake.blobs[digest]

    async def keep_pulling_warm(rotation: asyncio.Task[Any]) -> int:
        rounds = 0
        while not rotation.done():
            await asyncio.gather(*(pull(d) for d in warm))
            rounds += 1
        return rounds

    rotation = asyncio.create_task(
        run_mirror_async("keys", "rotate", "--data-dir", data_dir, "--grace", "0.5", kek_file=kek)
    )
    rounds, *_ = await asyncio.gather(keep_pulling_warm(rotation), *(pull(d) for d in cold))
    rotated = await rotation

    assert rotated.returncode == 0, rotated.stderr
    assert isinstance(rounds, int) and rounds >= 2, "the warm pulls ran throughout the rotation"
    listing = await run_mirror_async("keys", "list", "--data-dir", data_dir, kek_file=kek)
    new_id = listing.stdout.split(" ")[0].rstrip(":")
    assert new_id != old_id
    assert f"{new_id} (current): {len(warm) + len(cold)} objects" in listing.stdout
    assert f"{old_id}: 0 objects" in listing.stdout

    retired = await run_mirror_async("keys", "retire", old_id, "--data-dir", data_dir, kek_file=kek)
    assert retired.returncode == 0, retired.stderr
    assert old_id not in kek.read_text()
    for digest in warm + cold:
        await pull(digest)
        assert fake.count("GET", digest) == 1, "served from the cache, never refetched"
    assert encrypted.metric("mirror_corrupt_objects_total") == 0
    verify = await run_mirror_async("cache", "verify", "--data-dir", data_dir, kek_file=kek)
    assert verify.returncode == 0, verify.stdout


async def test_retire_refuses_the_current_key(encrypted: Mirror, fake: FakeUpstream) -> None:
    digest = fake.add_blob(os.urandom(1000))
    assert (await fetch(f"{encrypted.url}/v2/team/app/blobs/{digest}"))[0] == 200
    data_dir, kek = str(encrypted.data_dir), kek_file_of(encrypted)
    listing = await run_mirror_async("keys", "list", "--data-dir", data_dir, kek_file=kek)
    kek_id = listing.stdout.split(" ")[0].rstrip(":")

    refused = await run_mirror_async("keys", "retire", kek_id, "--data-dir", data_dir, kek_file=kek)

    assert refused.returncode == 2 and "is the current KEK" in refused.stderr
    assert kek_id in kek.read_text()


# Start-up --------------------------------------------------------------------------------------


def seed_cache(tmp_path: Path) -> tuple[Path, Path, dict[Path, bytes]]:
    """A data dir with one encrypted object, its key file, and a snapshot of its files."""
    data_dir, kek = tmp_path / "data", tmp_path / "mirror.kek"
    done = run_mirror("keys", "list", "--data-dir", str(data_dir), kek_file=kek)
    assert done.returncode == 0, done.stderr
    from mirror.app.stores import open_store
    from mirror.config import load_config

    config = load_config(
        overrides={"storage": {"data_dir": str(data_dir)}, "encryption": {"kek_file": str(kek)}},
        environ={},
    )
    store = open_store(config, environ={})
    asyncio.run(store.put(Digest.of(b"cached"), b"cached"))
    files = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    return data_dir, kek, files


@pytest.mark.parametrize("problem", ["missing", "wrong", "loose-mode"])
def test_bad_kek_at_start_up_is_a_clear_error_and_deletes_nothing(
    tmp_path: Path, problem: str
) -> None:
    data_dir, kek, files = seed_cache(tmp_path)
    if problem == "missing":
        kek.unlink()
    elif problem == "wrong":
        kek_id = kek.read_text().splitlines()[1].split(":")[0]
        kek.write_text(f"{kek_id}:{'A' * 43}=\n")
    else:
        kek.chmod(0o644)
    port = free_port()

    done = run_mirror(
        "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir), kek_file=kek
    )

    assert done.returncode == 2
    expected = {
        "missing": "does not exist, but the cache",
        "wrong": "is not the key this cache was encrypted with",
        "loose-mode": "chmod 600",
    }[problem]
    assert "mirror: key error:" in done.stderr and expected in done.stderr
    assert {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()} == files
    assert kek.exists() == (problem != "missing")


# Crash safety ----------------------------------------------------------------------------------


async def test_kill_9_mid_fill_leaves_nothing_visible_and_the_next_pull_refills(
    fake: FakeUpstream, fake_url: str, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    digest = fake.add_blob(data)
    fake.blob_mode[digest] = "slow"
    port = free_port()
    config = tmp_path / "mirror.toml"
    config.write_text(
        f'default_upstream = "{FAKE_HOST}"\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[encryption]\nkek_file = "{tmp_path / "mirror.kek"}"\n'
        f'[[upstreams]]\nhost = "{FAKE_HOST}"\nurl = "{fake_url}"\n'
    )
    url = f"http://127.0.0.1:{port}/v2/team/app/blobs/{digest}"

    async def start() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mirror", "serve", "--config", str(config), stderr=-1
        )
        assert proc.stderr is not None
        while b"listening on" not in await asyncio.wait_for(proc.stderr.readline(), 20):
            pass
        return proc

    server = await start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                await resp.content.readexactly(256 * 1024)
                server.kill()  # SIGKILL mid-fill
                await server.wait()
        assert list((tmp_path / "data" / "tmp").iterdir()) != []
        assert not any(p.is_file() for p in (tmp_path / "data" / "blobs").rglob("*"))
        server = await start()
        assert list((tmp_path / "data" / "tmp").iterdir()) == []
        status, body, _ = await fetch(url)
        assert status == 200 and body == data
    finally:
        if server.returncode is None:
            server.terminate()
            await server.wait()
