"""Garbage collection of hosted content (issue 11): what a DELETE leaves linked in a hosted
repository is unlinked after ``hosted.gc_grace`` and deleted once nothing references it.

Everything is pushed and pulled over HTTP (blob uploads, manifest PUTs) into a real
in-process mirror; the collector is the retention run, moved through time by a ManualClock.
"""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp
import pytest

from mirror.clock import ManualClock
from mirror.oci.digest import Digest
from mirror.oci.media import OCI_INDEX, OCI_MANIFEST
from mirror.web.keys import CACHE, RETENTION, SERVICES
from tests.integration import test_uploads as uploads
from tests.integration.test_uploads import Pushee, call, push_blob

pytestmark = pytest.mark.integration

pushee_factory = uploads.pushee_factory
GRACE = 3600.0  # hosted.gc_grace's default
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


async def push_image(mirror: Pushee, name: str, reference: str, layers: list[bytes]) -> bytes:
    """Upload a fresh config and ``layers`` into ``name``, then PUT the manifest; its body."""
    config = json.dumps({"image": name, "nonce": os.urandom(8).hex()}).encode()
    for data in (config, *layers):
        await push_blob(mirror, name, data)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG, config),
        "layers": [descriptor(LAYER, data) for data in layers],
    }
    body = json.dumps(doc).encode()
    await put_manifest(mirror, name, reference, body)
    return body


async def put_manifest(
    mirror: Pushee, name: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST
) -> None:
    status, _, answer = await call(
        mirror,
        "PUT",
        f"/v2/{name}/manifests/{reference}",
        data=body,
        headers={"Content-Type": media_type},
    )
    assert status == 201, answer


def content_of(body: bytes) -> list[Digest]:
    """The config and layer digests of a manifest body."""
    doc = json.loads(body)
    return [Digest.parse(d["digest"]) for d in (doc["config"], *doc["layers"])]


async def pulls(
    mirror: Pushee, name: str, reference: str, body: bytes, blobs: dict[Digest, bytes]
) -> None:
    """``name:reference`` pulls with exactly ``body`` and the bytes of every blob."""
    async with aiohttp.ClientSession() as http:
        url = f"{mirror.url}/v2/{name}/manifests/{reference}"
        headers = {**mirror.auth("acme-manager"), "Accept": OCI_MANIFEST}
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200
            assert await resp.read() == body
        for digest in content_of(body):
            url = f"{mirror.url}/v2/{name}/blobs/{digest}"
            async with http.get(url, headers=mirror.auth("acme-manager")) as resp:
                assert resp.status == 200, digest
                assert await resp.read() == blobs[digest]


async def collect(mirror: Pushee) -> dict[str, Any]:
    """One retention run (the collector's schedule and `mirror retention run` call this)."""
    report = await mirror.app[RETENTION].run(dry_run=False, trigger="schedule")
    return report.as_json()


def audit(mirror: Pushee) -> list[dict[str, Any]]:
    path = mirror.data_dir / "retention" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_deleting_an_image_reclaims_what_only_it_used(
    pushee_factory: uploads.Factory,
) -> None:
    mirror = await pushee_factory()
    base, only_one, only_two = (os.urandom(3000) for _ in range(3))
    first = await push_image(mirror, "acme/one", "v1", [base, only_one])
    second = await push_image(mirror, "acme/two", "v1", [base, only_two])
    blobs = {Digest.of(d): d for d in (base, only_one, only_two)}
    blobs |= {Digest.of(b): b for b in (first, second)}
    config_two = content_of(second)[0]
    blobs[config_two] = (await mirror.stored(config_two)) or b""
    reclaimed: list[tuple[str, int]] = []
    mirror.app[RETENTION].on_reclaimed = lambda tenancy, size: reclaimed.append((tenancy, size))
    gone = [Digest.of(first), *content_of(first)[:1], Digest.of(only_one)]

    status, _, _ = await call(mirror, "DELETE", f"/v2/acme/one/manifests/{Digest.of(first)}")
    assert status == 202
    await collect(mirror)  # within the grace: nothing goes yet
    for digest in gone:
        assert await mirror.app[CACHE].stat(digest) is not None
    mirror.clock.advance(GRACE + 1)
    report = await collect(mirror)

    for digest in gone:
        assert await mirror.app[CACHE].stat(digest) is None, digest
        assert mirror.app[SERVICES].metadata.manifest(digest) is None
        assert not mirror.linked("acme/one", digest)
    assert await mirror.stored(Digest.of(base)) == base  # still used by acme/two
    await pulls(mirror, "acme/two", "v1", second, blobs)
    freed = report["hosted_reclaimed"]["acme"]
    assert freed == sum(d["size"] for d in report["deleted"]) > len(first) + len(only_one)
    assert reclaimed == [("acme", freed)]
    metrics = mirror.app[SERVICES].metrics
    assert metrics.hosted_bytes_reclaimed.labels("acme")._value.get() == freed
    events = audit(mirror)
    unlinked = {e["digest"] for e in events if e["event"] == "unlink-hosted"}
    assert unlinked == {str(d) for d in gone[1:]} | {str(Digest.of(base))}
    deleted = {e["digest"]: e["reason"] for e in events if e["event"].startswith("delete-")}
    assert set(deleted) == {str(d) for d in gone}
    assert "left acme/one" in deleted[str(Digest.of(first))]
    for digest in gone[1:]:
        assert deleted[str(digest)] == f"only referenced by manifest {Digest.of(first)}"


async def test_an_upload_in_progress_survives_the_grace_across_a_restart(
    pushee_factory: uploads.Factory,
) -> None:
    clock = ManualClock()
    mirror = await pushee_factory(clock=clock)
    layer = os.urandom(4000)
    await push_blob(mirror, "acme/app", layer)  # the manifest is not PUT yet
    await collect(mirror)  # first finds the blob unreferenced
    await mirror.server.close()
    mirror = await pushee_factory(clock=clock, fresh=False)
    clock.advance(GRACE / 2)
    await collect(mirror)
    assert mirror.linked("acme/app", Digest.of(layer))
    body = await push_image(mirror, "acme/app", "v1", [layer])  # the push completes
    clock.advance(GRACE)
    await collect(mirror)
    await pulls(
        mirror,
        "acme/app",
        "v1",
        body,
        {Digest.of(layer): layer}
        | {d: (await mirror.stored(d)) or b"" for d in content_of(body)[:1]},
    )


async def test_an_abandoned_upload_goes_a_grace_after_it_was_first_seen(
    pushee_factory: uploads.Factory,
) -> None:
    clock = ManualClock()
    mirror = await pushee_factory(clock=clock)
    layer = os.urandom(4000)
    await push_blob(mirror, "acme/app", layer)
    await collect(mirror)
    await mirror.server.close()
    mirror = await pushee_factory(clock=clock, fresh=False)  # first-seen times are kept
    clock.advance(GRACE - 1)
    await collect(mirror)
    assert await mirror.stored(Digest.of(layer)) == layer
    clock.advance(1)
    await collect(mirror)
    assert not mirror.linked("acme/app", Digest.of(layer))
    assert await mirror.app[CACHE].stat(Digest.of(layer)) is None


async def test_a_tag_delete_keeps_the_manifest_and_its_blobs(
    pushee_factory: uploads.Factory,
) -> None:
    mirror = await pushee_factory()
    layer = os.urandom(2000)
    body = await push_image(mirror, "acme/app", "v1", [layer])
    blobs = {Digest.of(layer): layer, Digest.of(body): body}
    blobs |= {d: (await mirror.stored(d)) or b"" for d in content_of(body)[:1]}
    status, _, _ = await call(mirror, "DELETE", "/v2/acme/app/manifests/v1")
    assert status == 202
    await collect(mirror)
    mirror.clock.advance(10 * GRACE)
    report = await collect(mirror)
    assert report["deleted"] == [] and report["hosted_unlinked"] == []
    await pulls(mirror, "acme/app", str(Digest.of(body)), body, blobs)


async def test_deleting_an_index_reclaims_its_children_and_their_referrers(
    pushee_factory: uploads.Factory,
) -> None:
    mirror = await pushee_factory()
    amd, arm = os.urandom(1000), os.urandom(1000)
    children: list[bytes] = []  # pushed by digest, as docker and skopeo push platforms
    for layer in (amd, arm):
        config = json.dumps({"arch": os.urandom(4).hex()}).encode()
        for data in (config, layer):
            await push_blob(mirror, "acme/multi", data)
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(CONFIG, config),
            "layers": [descriptor(LAYER, layer)],
        }
        child = json.dumps(doc).encode()
        await put_manifest(mirror, "acme/multi", str(Digest.of(child)), child)
        children.append(child)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, c) for c in children],
        }
    ).encode()
    await put_manifest(mirror, "acme/multi", "latest", index, OCI_INDEX)
    empty = b"{}"
    await push_blob(mirror, "acme/multi", empty)
    signature = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/example.signature",
            "config": descriptor("application/vnd.oci.empty.v1+json", empty),
            "layers": [descriptor("application/vnd.oci.empty.v1+json", empty)],
            "subject": descriptor(OCI_INDEX, index),
        }
    ).encode()
    await put_manifest(mirror, "acme/multi", str(Digest.of(signature)), signature)
    # An untagged manifest pushed on its own is kept: it is pullable by digest.
    kept = await push_image(mirror, "acme/multi", "tmp", [os.urandom(500)])
    await call(mirror, "DELETE", "/v2/acme/multi/manifests/tmp")

    status, _, _ = await call(mirror, "DELETE", f"/v2/acme/multi/manifests/{Digest.of(index)}")
    assert status == 202
    mirror.clock.advance(GRACE + 1)
    await collect(mirror)

    everything = [Digest.of(index), Digest.of(signature), Digest.of(empty)]
    for child in children:
        everything += [Digest.of(child), *content_of(child)]
    for digest in everything:
        assert await mirror.app[CACHE].stat(digest) is None, digest
        assert not mirror.linked("acme/multi", digest)
    assert await mirror.stored(Digest.of(kept)) == kept
    for digest in content_of(kept):
        assert mirror.linked("acme/multi", digest)
