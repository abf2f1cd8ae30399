"""The upstream client against the real CNCF distribution registry (Debian ``docker-registry``)
behind htpasswd (bcrypt) Basic auth."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.upstream import UpstreamClient, UpstreamEndpoint
from mirror.upstream.authenticator import basic_authorization

pytestmark = pytest.mark.integration

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
USER, PASSWORD = "mirror", "correct horse"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def bcrypt_hash(password: str) -> str | None:
    """A bcrypt hash (cost 4: fast) from whatever this machine has, or None."""
    try:
        bcrypt = importlib.import_module("bcrypt")
    except ImportError:
        pass
    else:
        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode())
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        line = subprocess.run(
            [htpasswd, "-Bbn", "-C", "4", "x", password], check=True, capture_output=True, text=True
        ).stdout.strip()
        return line.partition(":")[2]
    with warnings.catch_warnings():  # crypt is deprecated (gone in 3.13) but uses libxcrypt
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return None
        if crypt.METHOD_BLOWFISH not in crypt.methods:
            return None
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    return hashed if hashed and hashed.startswith("$2") else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RealRegistry:
    url: str
    port: int

    def endpoint(
        self, username: str | None = None, password: str | None = None
    ) -> UpstreamEndpoint:
        return UpstreamEndpoint(
            host=f"127.0.0.1:{self.port}",
            url=self.url,
            username=username,
            password=password,
            retries=0,
        )


def wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/v2/", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # 401: it is up and asking for credentials
        except OSError:
            time.sleep(0.05)
    pytest.fail("docker-registry did not answer /v2/ within 15 s")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRegistry]:
    if not REGISTRY_BINARY.exists():
        pytest.skip("docker-registry is not installed")
    hashed = bcrypt_hash(PASSWORD)
    if hashed is None:
        pytest.skip("no way to make a bcrypt hash here (no bcrypt, htpasswd or crypt)")
    tmp = tmp_path_factory.mktemp("registry")
    port = free_port()
    (tmp / "htpasswd").write_text(f"{USER}:{hashed}\n")
    (tmp / "cfg.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: mirror-test\n    path: {tmp / 'htpasswd'}\n"
    )
    log = tmp / "registry.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(REGISTRY_BINARY), "serve", str(tmp / "cfg.yml")],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url, process, log)
        yield RealRegistry(url, port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_empty_repository_is_name_unknown(registry: RealRegistry) -> None:
    async with UpstreamClient(registry.endpoint(USER, PASSWORD)) as client:
        with pytest.raises(RegistryError) as caught:
            await client.get_tags("nothing/here")
    assert caught.value.code is ErrorCode.NAME_UNKNOWN
    assert caught.value.status == 404


@pytest.mark.parametrize(
    ("username", "password"),
    [pytest.param(USER, "wrong", id="bad-password"), pytest.param(None, None, id="anonymous")],
)
async def test_refused_credentials_are_unauthorized(
    registry: RealRegistry, username: str | None, password: str | None
) -> None:
    async with UpstreamClient(registry.endpoint(username, password)) as client:
        with pytest.raises(RegistryError) as caught:
            await client.get_tags("nothing/here")
    assert caught.value.code is ErrorCode.UNAUTHORIZED
    assert caught.value.status == 401


async def push(session: aiohttp.ClientSession, url: str, repo: str, blob: bytes) -> Digest:
    digest = Digest.of(blob)
    async with session.post(f"{url}/v2/{repo}/blobs/uploads/") as started:
        assert started.status == 202, await started.text()
        location = started.headers["Location"]
    target = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    async with session.put(
        target, data=blob, headers={"Content-Type": "application/octet-stream"}
    ) as done:
        assert done.status == 201, await done.text()
    return digest


async def test_pull_manifest_and_blob_ranges(registry: RealRegistry) -> None:
    layer = hashlib.sha256(b"seed").digest() * 1000
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    headers = {"Authorization": basic_authorization(USER, PASSWORD)}
    async with aiohttp.ClientSession(headers=headers) as session:
        layer_digest = await push(session, registry.url, "team/app", layer)
        config_digest = await push(session, registry.url, "team/app", config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": str(config_digest),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": str(layer_digest),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        async with session.put(
            f"{registry.url}/v2/team/app/manifests/v1",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        ) as put:
            assert put.status == 201, await put.text()

    async with UpstreamClient(registry.endpoint(USER, PASSWORD)) as client:
        head = await client.head_manifest("team/app", "v1", [OCI_MANIFEST])
        got = await client.get_manifest("team/app", "v1", [OCI_MANIFEST])
        size = await client.head_blob("team/app", layer_digest)
        async with client.open_blob("team/app", layer_digest, offset=12345) as blob:
            tail = b"".join([chunk async for chunk in blob.iter_chunks()])
        tags, _ = await client.get_tags("team/app")
        with pytest.raises(RegistryError) as missing:
            await client.head_manifest("team/app", "v2", [OCI_MANIFEST])
    assert head.digest == Digest.of(manifest) == got.digest
    assert (got.body, got.media_type) == (manifest, OCI_MANIFEST)
    assert size == len(layer)
    assert (blob.size, tail) == (len(layer), layer[12345:])
    assert tags == {"name": "team/app", "tags": ["v1"]}
    assert missing.value.code is ErrorCode.MANIFEST_UNKNOWN
