"""Bundles for air-gapped sites: a connected mirror exports images (single-arch, a
multi-arch index, one with a signature artifact as referrer) as an OCI image layout tar, a
second mirror started as ``mirror serve --offline --data-dir DIR`` (no configuration, no
upstream reachable) imports it, and ctr (hosts.toml), skopeo and docker pull every image from
it, a blob it lacks is the fast offline 404 and its imported tags never go stale; standard
tools (skopeo, umoci) read what export writes, a skopeo-written oci-archive imports, and a
tampered bundle is refused naming the image, with nothing of it visible (offline 404s)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.app.build import build_app
from mirror.cli import export as export_cli
from mirror.cli import importer as import_cli
from mirror.cli.main import parser
from mirror.cli.serve import config_from_args
from mirror.clock import ManualClock
from mirror.config import load_config
from mirror.db.lock import DataDirLocked
from mirror.hosted.repositories import hosted_target
from mirror.metrics import Metrics
from mirror.oci.digest import Digest
from mirror.testing.images import OCI_INDEX, OCI_MANIFEST
from mirror.web.keys import AUTH, CACHE, HOSTED
from tests.peers.containerd import Containerd, write_hosts_toml
from tests.peers.factory import ImageFactory
from tests.peers.registry import Registry
from tests.peers.skopeo import skopeo_copy

from .conftest import AuthMirrorFactory, DockerdFactory, Mirror, MirrorFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HUB = "docker.io"
# Nothing listens here: the air-gapped mirror's only "upstream".
NOWHERE = "http://127.0.0.1:9"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
EMPTY = b"{}"


def put_signature(registry: Registry, repo: str, subject: str, size: int, media: str) -> str:
    """Push a signature artifact whose subject is ``subject`` and, as distribution 2.8 has no
    referrers API, the referrers tag schema's index naming it; returns its digest."""
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": subject}}}).encode()
    for blob in (EMPTY, payload):
        start = urllib.request.Request(f"{registry.url}/v2/{repo}/blobs/uploads/", method="POST")
        location = urllib.request.urlopen(start).headers["Location"]
        sep = "&" if "?" in location else "?"
        url = f"{location}{sep}digest={Digest.of(blob)}"
        if url.startswith("/"):
            url = f"{registry.url}{url}"
        headers = {"Content-Type": "application/octet-stream"}
        urllib.request.urlopen(urllib.request.Request(url, blob, headers, method="PUT"))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": str(Digest.of(EMPTY)), "size": 2},
        "layers": [{"mediaType": "application/octet-stream",
                    "digest": str(Digest.of(payload)), "size": len(payload)}],
        "subject": {"mediaType": media, "digest": subject, "size": size},
    }  # fmt: skip
    body = json.dumps(manifest).encode()
    digest = str(Digest.of(body))
    _put_manifest(registry, repo, digest, body, OCI_MANIFEST)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
                            "artifactType": SIGNATURE_TYPE}]}  # fmt: skip
    tag = subject.replace(":", "-")
    _put_manifest(registry, repo, tag, json.dumps(index).encode(), OCI_INDEX)
    return digest


def _put_manifest(registry: Registry, repo: str, ref: str, body: bytes, media: str) -> None:
    url = f"{registry.url}/v2/{repo}/manifests/{ref}"
    request = urllib.request.Request(url, body, {"Content-Type": media}, method="PUT")
    urllib.request.urlopen(request)


async def offline_site(aiohttp_server: Any, data_dir: Path) -> Mirror:
    """``mirror serve --offline --data-dir DATA_DIR`` and nothing else: no config file, no
    ``--upstream`` (the built-in docker.io, ghcr.io, ... are never contacted offline)."""
    args = parser().parse_args(["serve", "--offline", "--data-dir", str(data_dir)])
    config = config_from_args(args)
    assert config.cache.offline
    clock, metrics = ManualClock(), Metrics()
    app = build_app(config, clock=clock, metrics=metrics)
    server = await aiohttp_server(app, host="127.0.0.1")
    return Mirror(server, config, clock, metrics, data_dir, app)


async def assert_offline_404(url: str) -> dict[str, Any]:
    """``url`` answers a 404 at once saying the mirror is offline; the error."""
    started = time.monotonic()
    status, body = await _get(url)
    assert time.monotonic() - started < 1.0, url
    assert status == 404, (url, body)
    error: dict[str, Any] = json.loads(body)["errors"][0]
    assert error["detail"]["offline"] is True and "offline" in error["message"], error
    return error


YEAR = 365 * 24 * 3600.0


async def run_export(*argv: str) -> tuple[int, dict[str, Any], str]:
    """``mirror export ARGV``: exit status, the printed bundle manifest, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = await export_cli.export(parser().parse_args(["export", *argv]), out, err)
    return code, json.loads(out.getvalue() or "{}"), err.getvalue()


async def run_import(*argv: str) -> tuple[int, dict[str, Any], str]:
    """``mirror import ARGV``: exit status, the printed report, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = await import_cli.import_bundle(parser().parse_args(["import", *argv]), out, err)
    return code, json.loads(out.getvalue() or "{}"), err.getvalue()


async def image_set(mirror_factory: MirrorFactory, registry: Registry, factory: ImageFactory
                    ) -> tuple[Mirror, dict[str, Any]]:  # fmt: skip
    """A connected mirror serving docker.io from the real registry, and three images in it."""
    connected = await mirror_factory({HUB: registry.url})
    single = factory.push("3.20", repo="library/alpine", layers=2, layer_size=50_000)
    multi = factory.push_index("1.36", repo="library/busybox", layer_size=20_000)
    signed = factory.push("1.0", repo="acme/app", layers=1, layer_size=30_000)
    manifest = signed.image.manifest
    signature = put_signature(registry, "acme/app", signed.image.manifest_digest,
                              manifest.size, manifest.media_type)  # fmt: skip
    return connected, {"single": single, "multi": multi, "signed": signed, "sig": signature}


REFS = ("docker.io/library/alpine:3.20", "docker.io/library/busybox:1.36", "docker.io/acme/app:1.0")


async def test_round_trip_to_an_air_gapped_mirror_pulled_by_ctr_skopeo_and_docker(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    containerd: Containerd,
    hosts_dir: Path,
    dockerd_factory: DockerdFactory,
    aiohttp_server: Any,
    tmp_path: Path,
) -> None:
    connected, images = await image_set(mirror_factory, upstream_registry, image_factory)
    bundle = tmp_path / "bundle.tar"
    code, manifest, err = await run_export(*REFS, "-o", str(bundle), "--referrers",
                                           "--mirror", connected.url)  # fmt: skip
    assert code == 0, err
    assert [i["reference"] for i in manifest["images"]] == list(REFS)
    assert manifest["images"][1]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert manifest["images"][2]["referrers"] == [images["sig"]]
    assert manifest["images"][0]["digest"] == images["single"].image.manifest_digest

    data_dir = tmp_path / "airgap"
    code, report, err = await run_import(str(bundle), "--data-dir", str(data_dir))
    assert code == 0, err
    assert [r["reference"] for r in report["added"]] == list(REFS)
    # Importing twice stores nothing twice.
    code, again, err = await run_import(str(bundle), "--data-dir", str(data_dir))
    assert code == 0 and again["blobs_added"] == 0 and len(again["skipped"]) == 3, again

    airgap = await offline_site(aiohttp_server, data_dir)
    # A year later nothing has gone stale: nothing could revalidate it.
    airgap.clock.advance(YEAR)
    write_hosts_toml(hosts_dir, HUB, NOWHERE, airgap.url)
    for ref in REFS:
        done = await containerd.pull_async(ref, hosts_dir)
        assert done.returncode == 0, (ref, done.stderr)
    assert {b.digest for b in images["single"].image.blobs()} <= containerd.content_digests()

    (tmp_path / "skopeo").mkdir()
    for ref in REFS:
        path = ref.removeprefix(f"{HUB}/")
        out = tmp_path / "skopeo" / path.replace("/", "_").replace(":", "_")
        copied = await asyncio.to_thread(
            skopeo_copy,
            f"docker://{airgap.host}/{HUB}/{path}",
            f"dir:{out}",
            "--all",
            "--src-tls-verify=false",
        )
        assert copied.returncode == 0, copied.stderr

    subject = images["signed"].image.manifest_digest
    status, body = await _get(f"{airgap.url}/v2/acme/app/referrers/{subject}?ns={HUB}")
    assert status == 200
    assert [m["digest"] for m in json.loads(body)["manifests"]] == [images["sig"]]

    docker = await dockerd_factory(registry_mirrors=(airgap.url,))
    for name in ("alpine:3.20", "busybox:1.36", "acme/app:1.0"):
        pulled = await docker.docker("pull", name)
        assert pulled.returncode == 0, (name, pulled.stderr)

    # What the bundle did not carry is the fast offline 404, in the code of what was asked.
    lacking = Digest.of(b"not in the bundle")
    error = await assert_offline_404(f"{airgap.url}/v2/library/alpine/blobs/{lacking}?ns={HUB}")
    assert error["code"] == "BLOB_UNKNOWN"
    error = await assert_offline_404(f"{airgap.url}/v2/library/alpine/manifests/edge?ns={HUB}")
    assert error["code"] == "MANIFEST_UNKNOWN"


def _tamper_one_layer(bundle: Path, digest: str) -> None:
    """Flip one byte in the middle of the blob member of ``digest``."""
    with tarfile.open(bundle) as archive:
        member = archive.getmember(f"blobs/sha256/{digest.removeprefix('sha256:')}")
    with bundle.open("r+b") as handle:
        handle.seek(member.offset_data + member.size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))


async def test_a_tampered_bundle_is_refused_naming_the_image_and_nothing_of_it_is_visible(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    aiohttp_server: Any,
    tmp_path: Path,
) -> None:
    connected = await mirror_factory({HUB: upstream_registry.url})
    good_image = image_factory.push("good", repo="library/alpine", layers=1, layer_size=20_000)
    bad = image_factory.push("bad", repo="library/alpine", layers=2, layer_size=40_000)
    bundle = tmp_path / "bundle.tar"
    refs = ("docker.io/library/alpine:good", "docker.io/library/alpine:bad")
    code, _, err = await run_export(*refs, "-o", str(bundle), "--mirror", connected.url)
    assert code == 0, err
    layer = bad.image.layers[1].digest
    _tamper_one_layer(bundle, layer)

    data_dir = tmp_path / "airgap"
    code, report, err = await run_import(str(bundle), "--data-dir", str(data_dir))
    assert code == 1
    assert [r["reference"] for r in report["refused"]] == ["docker.io/library/alpine:bad"]
    assert layer in report["refused"][0]["reason"]
    assert "refused docker.io/library/alpine:bad" in err
    assert [r["reference"] for r in report["added"]] == ["docker.io/library/alpine:good"]

    airgap = await offline_site(aiohttp_server, data_dir)
    assert airgap.services.metadata.tag(HUB, "library/alpine", "bad") is None
    good = f"{airgap.url}/v2/library/alpine/manifests/good?ns={HUB}"
    assert await _status(good) == 200
    shared = {b.digest for b in good_image.image.blobs()}
    for blob in bad.image.blobs():
        if blob.digest in shared:
            continue
        assert await airgap.app[CACHE].stat(Digest.parse(blob.digest)) is None, blob.digest
        await assert_offline_404(f"{airgap.url}/v2/library/alpine/blobs/{blob.digest}?ns={HUB}")
    await assert_offline_404(f"{airgap.url}/v2/library/alpine/manifests/bad?ns={HUB}")
    manifest = bad.image.manifest_digest
    await assert_offline_404(f"{airgap.url}/v2/library/alpine/manifests/{manifest}?ns={HUB}")


async def _get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET (the mirrors run in this event loop: no blocking client)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


async def _status(url: str) -> int:
    return (await _get(url))[0]


async def test_standard_tools_read_an_export_and_a_skopeo_archive_imports(
    mirror_factory: MirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    aiohttp_server: Any,
    tmp_path: Path,
) -> None:
    connected = await mirror_factory({HUB: upstream_registry.url})
    pushed = image_factory.push("3.20", repo="library/alpine", layers=2, layer_size=30_000)
    bundle = tmp_path / "bundle.tar"
    ref = "docker.io/library/alpine:3.20"
    code, _, err = await run_export(ref, "-o", str(bundle), "--mirror", connected.url)
    assert code == 0, err

    copied = await asyncio.to_thread(
        skopeo_copy, f"oci-archive:{bundle}:{ref}", f"dir:{tmp_path / 'sk'}"
    )
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "sk" / pushed.image.layers[0].digest.removeprefix("sha256:")).exists()

    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed (scripts/install-test-deps.sh)")
    layout = tmp_path / "umoci-layout"
    layout.mkdir()
    with tarfile.open(bundle) as archive:
        archive.extractall(layout, filter="data")
    listed = await asyncio.to_thread(
        subprocess.run,
        ["umoci", "ls", "--layout", str(layout)],
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert ref in listed.stdout.split()

    archived = tmp_path / "skopeo.tar"
    written = await asyncio.to_thread(
        skopeo_copy, f"docker://{upstream_registry.host}/library/alpine:3.20",
        f"oci-archive:{archived}:{ref}", "--src-tls-verify=false",
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    data_dir = tmp_path / "airgap"
    code, report, err = await run_import(str(archived), "--data-dir", str(data_dir))
    assert code == 0, err
    assert [r["reference"] for r in report["added"]] == [ref]
    airgap = await offline_site(aiohttp_server, data_dir)
    assert await _status(f"{airgap.url}/v2/library/alpine/manifests/3.20?ns={HUB}") == 200


async def test_import_into_a_hosted_repository_and_an_export_of_chosen_platforms(
    mirror_factory: MirrorFactory,
    auth_mirror_factory: AuthMirrorFactory,
    upstream_registry: Registry,
    image_factory: ImageFactory,
    tmp_path: Path,
) -> None:
    connected = await mirror_factory({HUB: upstream_registry.url})
    multi = image_factory.push_index("1.36", repo="library/busybox", layer_size=20_000)
    bundle = tmp_path / "bundle"
    ref = "docker.io/library/busybox:1.36"
    code, manifest, err = await run_export(
        ref, "--dir", str(bundle), "--platform", "linux/arm64", "--mirror", connected.url
    )
    assert code == 0, err
    assert manifest["images"][0]["platforms"] == ["linux/arm64"]
    amd64 = multi.index.image_for(("linux", "amd64"))
    arm64 = multi.index.image_for(("linux", "arm64"))
    blobs = bundle / "blobs" / "sha256"
    assert not (blobs / amd64.layers[0].digest.removeprefix("sha256:")).exists()
    assert (blobs / arm64.layers[0].digest.removeprefix("sha256:")).exists()

    hosted = await auth_mirror_factory({HUB: NOWHERE})
    hosted.identity.create_tenancy("acme", hosted.mirror.clock.now())
    config = tmp_path / "hosted.toml"
    data_dir = hosted.mirror.data_dir
    config.write_text(
        f'default_upstream = "{HUB}"\n[storage]\ndata_dir = "{data_dir}"\n'
        f'[encryption]\nkek_file = "{data_dir.with_name(data_dir.name + ".kek")}"\n'
        f'[auth]\nenabled = true\ndefault_tenancy = "nodes"\nregistry_hosts = ["localhost"]\n'
        f'[[upstreams]]\nhost = "{HUB}"\nurl = "{NOWHERE}"\n'
    )
    # The running mirror holds the data directory: import refuses to run beside it.
    with pytest.raises(DataDirLocked):
        await run_import(str(bundle), "--config", str(config), "--into", "acme/vendor")
    await hosted.mirror.server.close()

    # An index with a platform left out cannot be pushed into a hosted repository whole.
    code, report, err = await run_import(str(bundle), "--config", str(config), "--into",
                                         "acme/vendor")  # fmt: skip
    assert code == 1 and "MANIFEST_UNKNOWN" in report["refused"][0]["reason"], report
    code, _, err = await run_export(ref, "--dir", str(bundle), "--mirror", connected.url)
    assert code == 0, err
    code, report, err = await run_import(str(bundle), "--config", str(config), "--into",
                                         "acme/vendor")  # fmt: skip
    assert code == 0, err
    assert report["added"][0]["destination"] == "hosted acme/vendor/library/busybox"

    target = hosted_target("acme", "vendor/library/busybox", "acme/vendor/library/busybox")
    async with import_cli.opened(build_app(load_config(config, environ={}))) as app:
        found = await app[HOSTED].manifest(target, "1.36", [OCI_INDEX])
        assert str(found.digest) == multi.index.index_digest
        assert app[AUTH].identity.repository("acme", "vendor/library/busybox") is not None
