"""The container image, built and run for real: ``scripts/build-image.sh`` makes the base from
the Debian archive (mmdebstrap, cached between runs) and builds the Dockerfile on a private
dockerd; the image then runs on the host network in front of a real docker-registry, skopeo
pulls through it, its HEALTHCHECK (which reads the mounted configuration) turns healthy on
the configured port, the server runs as UID 10001, and no key file is in the image."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.peers.dockerd import Dockerd
from tests.peers.factory import ImageFactory
from tests.peers.ports import free_port
from tests.peers.registry import Registry
from tests.peers.skopeo import skopeo_copy_async

pytestmark = pytest.mark.integration

CHECKOUT = Path(__file__).resolve().parents[2]
IMAGE = "mirror:container-test"
UID = 10001
# The base rootfs tarball (mmdebstrap, ~4 min cold on a loaded machine) and the wheelhouse are
# kept here between runs; a warm run imports and builds in about a minute.
CACHE = Path(os.environ.get("ROOTFS_CACHE", "/tmp/mirror-image-cache"))
BUILD_TIMEOUT = 900.0


def _storage_driver() -> str:
    """overlay2 where the kernel has overlayfs (builds copy no layers), else vfs."""
    filesystems = Path("/proc/filesystems")
    has_overlay = filesystems.exists() and "overlay" in filesystems.read_text()
    return "overlay2" if has_overlay else "vfs"


@pytest.fixture
async def dockerd(tmp_path: Path) -> AsyncIterator[Dockerd]:
    tools = ("dockerd", "docker", "skopeo", "docker-registry", "mmdebstrap")
    missing = [name for name in tools if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (scripts/install-test-deps.sh)")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root here")
    async with Dockerd(tmp_path / "dockerd", storage_driver=_storage_driver()) as daemon:
        yield daemon


async def build(daemon: Dockerd) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(CHECKOUT / "scripts" / "build-image.sh"),
        IMAGE,
        env={**daemon.env(), "ROOTFS_CACHE": str(CACHE)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), BUILD_TIMEOUT)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode()


def mirror_config(port: int, upstream: Registry) -> str:
    return (
        f'default_upstream = "{upstream.host}"\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        '[storage]\ndata_dir = "/var/lib/mirror/data"\n'
        '[encryption]\nkek_file = "/run/mirror/mirror.kek"\n'
        f'[[upstreams]]\nhost = "{upstream.host}"\nurl = "{upstream.url}"\n'
    )


async def docker_ok(daemon: Dockerd, *args: str) -> str:
    done = await daemon.docker(*args)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


async def wait_healthy(daemon: Dockerd, container: str, within: float = 90.0) -> str:
    deadline = time.monotonic() + within
    status = ""
    while time.monotonic() < deadline:
        status = await docker_ok(
            daemon, "inspect", "--format", "{{.State.Health.Status}}", container
        )
        if status == "healthy":
            return status
        await asyncio.sleep(0.5)
    logs = await daemon.docker("logs", container)
    return f"{status}\n{logs.stdout}{logs.stderr}"


def names_in_image(daemon: Dockerd, container: str) -> list[str]:
    """Every path of the image's filesystem (``docker export`` of a container never started)."""
    proc = subprocess.Popen(
        ["docker", "export", container], stdout=subprocess.PIPE, env=daemon.env()
    )
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        names = [member.name for member in tar]
    assert proc.wait(timeout=120) == 0
    return names


async def test_the_image_builds_offline_and_serves_pulls_as_uid_10001(
    dockerd: Dockerd,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    tmp_path: Path,
) -> None:
    await build(dockerd)
    inspected = await docker_ok(dockerd, "image", "inspect", "--format", "{{json .Config}}", IMAGE)
    config = json.loads(inspected)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Healthcheck"]["Test"][:3] == ["CMD", "mirror", "healthcheck"]

    # No key in the image: nothing named *.kek anywhere, /run/mirror empty.
    await docker_ok(dockerd, "create", "--name", "pristine", IMAGE)
    names = await asyncio.to_thread(names_in_image, dockerd, "pristine")
    assert "opt/mirror/bin/mirror" in names
    assert [n for n in names if n.endswith(".kek")] == []
    assert [n for n in names if n.startswith("run/mirror/")] == []

    pushed = image_factory.push("v1", layers=2, layer_size=200_000)
    port = free_port()
    assert port != 5016  # the healthcheck must follow the configured port, not the default
    (tmp_path / "mirror.toml").write_text(mirror_config(port, upstream_registry))
    keys = tmp_path / "run-mirror"
    keys.mkdir(mode=0o700)
    os.chown(keys, UID, UID)
    await docker_ok(
        dockerd, "run", "--detach", "--name", "mirror", "--network", "host",
        "--health-interval", "1s",
        "--volume", f"{tmp_path / 'mirror.toml'}:/etc/mirror/mirror.toml:ro",
        "--volume", f"{keys}:/run/mirror",
        IMAGE,
    )  # fmt: skip
    try:
        assert await wait_healthy(dockerd, "mirror") == "healthy"
        top = await docker_ok(dockerd, "top", "mirror", "-eo", "uid,pid,args")
        serving = [line for line in top.splitlines() if "mirror serve" in line]
        assert serving and all(line.split()[0] == str(UID) for line in serving), top
        assert await docker_ok(dockerd, "exec", "mirror", "id", "-u") == str(UID)

        await skopeo_copy_async(
            f"docker://127.0.0.1:{port}/{pushed.repo}:v1",
            f"oci:{tmp_path / 'pulled'}:v1",
            "--src-tls-verify=false",
        )
        for blob in pushed.image.blobs():
            pulled = tmp_path / "pulled" / "blobs" / "sha256" / blob.digest.split(":", 1)[1]
            assert pulled.read_bytes() == blob.read_bytes()
            assert await upstream_registry.wait_for_requests("GET", blob.digest) == 1
        # The key the mirror made lives on the mounted volume, not in the container's layer.
        assert (keys / "mirror.kek").stat().st_uid == UID
        changed = await docker_ok(dockerd, "diff", "mirror")
        assert ".kek" not in changed
    finally:
        await dockerd.docker("rm", "--force", "--volumes", "mirror", "pristine")
