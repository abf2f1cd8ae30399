"""In flight: skopeo and containerd pull over HTTPS with a test CA, mTLS, and an upstream
verified against a configured CA bundle."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.peers.containerd import Containerd, write_hosts_toml
from tests.peers.factory import ImageFactory
from tests.peers.ports import free_port
from tests.peers.registry import Registry
from tests.peers.skopeo import SkopeoError, skopeo_copy_async
from tests.peers.tls import CertAuthority, make_test_ca

from .conftest import MirrorFactory
from .fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    return make_test_ca(tmp_path / "ca")


def cert_dir(ca: CertAuthority, tmp_path: Path, *, client: bool = False) -> Path:
    """A containers-style certs directory: ``*.crt`` CAs, ``*.cert``/``*.key`` client pair."""
    path = tmp_path / ("certs-client" if client else "certs")
    path.mkdir()
    shutil.copy(ca.ca_cert, path / "ca.crt")
    if client:
        shutil.copy(ca.client_cert, path / "client.cert")
        shutil.copy(ca.client_key, path / "client.key")
    return path


async def test_skopeo_pulls_over_https_verifying_the_test_ca(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    ca: CertAuthority,
    tmp_path: Path,
) -> None:
    mirror = await mirror_factory(
        {upstream_registry.host: upstream_registry.url}, ssl=ca.server_context()
    )
    assert mirror.url.startswith("https://")
    pushed = image_factory.push("v1", layers=2, layer_size=50_000)
    source = f"docker://{mirror.host}/{pushed.repo}:v1"

    await skopeo_copy_async(
        source,
        f"dir:{tmp_path / 'out'}",
        "--src-tls-verify=true",
        f"--src-cert-dir={cert_dir(ca, tmp_path)}",
    )

    for blob in pushed.image.blobs():
        assert (tmp_path / "out" / blob.digest.split(":")[1]).read_bytes() == blob.read_bytes()
    # Without the CA, verification fails: the certificate really is checked.
    with pytest.raises(SkopeoError, match="certificate"):
        await skopeo_copy_async(source, f"dir:{tmp_path / 'untrusted'}", "--src-tls-verify=true")


async def test_containerd_pulls_over_https_with_ca_in_hosts_toml(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    containerd: Containerd,
    hosts_dir: Path,
    ca: CertAuthority,
) -> None:
    mirror = await mirror_factory(
        {upstream_registry.host: upstream_registry.url}, ssl=ca.server_context()
    )
    pushed = image_factory.push("v1", layers=2, layer_size=100_000)
    write_hosts_toml(
        hosts_dir, upstream_registry.host, upstream_registry.url, mirror.url, ca=ca.ca_cert
    )

    done = await containerd.pull_async(pushed.ref, hosts_dir, plain_http=False)

    assert done.returncode == 0, done.stderr
    assert {b.digest for b in pushed.image.blobs()} <= containerd.content_digests()
    # The mirror served every blob (containerd would silently fall back to the origin).
    assert mirror.metric("mirror_fills_committed_total") == len(pushed.image.blobs())


async def test_mtls_requires_a_client_certificate_from_the_ca(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    ca: CertAuthority,
    tmp_path: Path,
) -> None:
    mirror = await mirror_factory(
        {upstream_registry.host: upstream_registry.url}, ssl=ca.server_context(client_ca=True)
    )
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"{mirror.url}/v2/", ssl=ca.client_context()) as resp:
                await resp.read()
        async with http.get(f"{mirror.url}/v2/", ssl=ca.client_context(with_cert=True)) as resp:
            assert resp.status == 200
    pushed = image_factory.push("v1", layers=1, layer_size=10_000)
    await skopeo_copy_async(
        f"docker://{mirror.host}/{pushed.repo}:v1",
        f"dir:{tmp_path / 'out'}",
        f"--src-cert-dir={cert_dir(ca, tmp_path, client=True)}",
    )
    layer = pushed.image.layers[0]
    assert (tmp_path / "out" / layer.digest.split(":")[1]).read_bytes() == layer.read_bytes()


@pytest.mark.parametrize("trusted", [True, False], ids=["ca-file", "no-ca-file"])
async def test_upstream_tls_is_verified_against_the_configured_ca(
    aiohttp_server: Any,
    ca: CertAuthority,
    tmp_path: Path,
    trusted: bool,
) -> None:
    from mirror.app.build import build_app
    from mirror.config import load_config

    fake = FakeUpstream()
    data = os.urandom(10_000)
    digest = fake.add_blob(data)
    upstream = await aiohttp_server(fake.app(), host="127.0.0.1", ssl=ca.server_context())
    entry: dict[str, Any] = {"host": "secure.test", "url": f"https://127.0.0.1:{upstream.port}"}
    if trusted:
        entry["ca_file"] = str(ca.ca_cert)
    entry["retries"] = 0
    config = load_config(
        overrides={
            "storage": {"data_dir": str(tmp_path / "data")},
            "encryption": {"kek_file": str(tmp_path / "kek")},
            "upstreams": [entry],
            "default_upstream": "secure.test",
        },
        environ={},
    )
    server = await aiohttp_server(build_app(config), host="127.0.0.1")

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/v2/a/b/blobs/{digest}") as resp:
            body = await resp.read()
            if trusted:
                assert resp.status == 200 and body == data
            else:
                assert resp.status == 503, body
                assert fake.count("GET", digest) == 0


def test_serve_over_https_from_the_configuration(ca: CertAuthority, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "mirror.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'tls_cert = "{ca.server_cert}"\ntls_key = "{ca.server_key}"\n'
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[encryption]\nkek_file = "{tmp_path / "kek"}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        while f"listening on https://127.0.0.1:{port}" not in proc.stderr.readline():
            assert proc.poll() is None
        context = ssl.create_default_context(cafile=str(ca.ca_cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/v2/", context=context) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_serve_with_an_unreadable_certificate_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mirror",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{free_port()}",
        ],
        env={
            **os.environ,
            "MIRROR_SERVER_TLS_CERT": str(tmp_path / "missing.crt"),
            "MIRROR_SERVER_TLS_KEY": str(tmp_path / "missing.key"),
            "MIRROR_ENCRYPTION_KEK_FILE": str(tmp_path / "kek"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "mirror: TLS error: server.tls_cert/tls_key" in done.stderr
