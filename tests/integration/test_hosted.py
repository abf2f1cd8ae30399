"""Hosted repositories in process: manifest pushes, reads, deletions, namespaces and access.

Blobs are linked straight through the metadata store and blob store (the upload routes are
another part's); everything else goes over HTTP to a real in-process mirror.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from mirror.db.identity.records import ADMINISTRATORS, PullThroughRule
from mirror.hosted.names import hosted_key
from mirror.hosted.repositories import hosted_target
from mirror.oci.digest import Digest
from mirror.oci.media import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from mirror.web.keys import CACHE, HOSTED

from .conftest import AuthMirror, MirrorFactory
from .test_auth_tokens import basic

pytestmark = pytest.mark.integration

EMPTY = "application/vnd.oci.empty.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"


class Hosted:
    """The mirror, acme's logins, and helpers to link blobs and call the API."""

    def __init__(self, mirror: AuthMirror) -> None:
        self.mirror = mirror
        self.boss = basic(*mirror.user("acme", "boss", ADMINISTRATORS))
        self.dev = basic(
            *mirror.user("acme", "dev", "devs", policy=["allow group devs to use repos in tenancy"])
        )
        self.reader = basic(
            *mirror.user(
                "acme", "reader", "readers", policy=["allow group readers to read repos in tenancy"]
            )
        )
        self.nobody = basic(*mirror.user("acme", "nobody"))
        self.outsider = basic(*mirror.user("beta", "eve", ADMINISTRATORS))

    async def blob(self, data: bytes, repo: str = "app") -> dict[str, Any]:
        """Store ``data`` and link it in ``acme/<repo>``, as a committed upload does."""
        digest = Digest.of(data)
        await self.mirror.mirror.app[CACHE].put(digest, data)
        self.mirror.mirror.services.metadata.link(hosted_key("acme"), repo, [digest])
        return {"mediaType": LAYER, "digest": str(digest), "size": len(data)}

    async def call(
        self,
        method: str,
        path: str,
        who: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(who or {})
        if content_type is not None:
            headers["Content-Type"] = content_type
        if accept is not None:
            headers["Accept"] = accept
        async with aiohttp.ClientSession() as http:
            async with http.request(
                method, f"{self.mirror.url}/v2/{path}", data=body, headers=headers
            ) as resp:
                return resp.status, dict(resp.headers), await resp.read()

    async def put(
        self,
        repo: str,
        reference: str,
        doc: dict[str, Any] | bytes,
        media_type: str = OCI_MANIFEST,
        who: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return await self.call(
            "PUT",
            f"acme/{repo}/manifests/{reference}",
            self.dev if who is None else who,
            body,
            media_type,
        )

    async def image(self, repo: str = "app", seed: bytes = b"x") -> dict[str, Any]:
        """An OCI image manifest whose config and layer are linked in ``acme/<repo>``."""
        config = {**await self.blob(b'{"config":' + seed + b"}", repo), "mediaType": CONFIG}
        layer = await self.blob(b"layer " + seed, repo)
        return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}


def code_of(body: bytes) -> str:
    return str(json.loads(body)["errors"][0]["code"])


def digest_of(doc: dict[str, Any]) -> str:
    return str(Digest.of(json.dumps(doc).encode()))


@pytest.fixture
async def hosted(auth_mirror: AuthMirror) -> Hosted:
    found = Hosted(auth_mirror)
    # acme's pull-through rule "hub": acme/hub/... is a cache, acme/<anything else> hosted.
    auth_mirror.identity.create_rule(PullThroughRule("acme", "hub", "http://127.0.0.1:1"))
    return found


async def test_push_by_tag_then_pull_by_tag_and_digest(hosted: Hosted) -> None:
    doc = await hosted.image()
    status, headers, _ = await hosted.put("app", "v1", doc, who=hosted.boss)
    assert status == 201
    digest = digest_of(doc)
    assert headers["Docker-Content-Digest"] == digest
    assert headers["Location"] == f"/v2/acme/app/manifests/{digest}"
    for reference in ("v1", digest):
        status, headers, body = await hosted.call(
            "GET", f"acme/app/manifests/{reference}", hosted.reader
        )
        assert status == 200
        assert body == json.dumps(doc).encode()
        assert headers["Content-Type"] == OCI_MANIFEST
        assert headers["Docker-Content-Digest"] == digest
        status, headers, body = await hosted.call(
            "HEAD", f"acme/app/manifests/{reference}", hosted.reader
        )
        assert status == 200 and headers["Content-Length"] == str(len(json.dumps(doc)))
    layer = doc["layers"][0]["digest"]
    status, _, body = await hosted.call("GET", f"acme/app/blobs/{layer}", hosted.reader)
    assert (status, body) == (200, b"layer x")
    # The repository record was created by the first push, private.
    record = hosted.mirror.identity.repository("acme", "app")
    assert record is not None and not record.public


async def test_push_by_digest_checks_the_digest(hosted: Hosted) -> None:
    await hosted.put("app", "v0", await hosted.image(), who=hosted.boss)
    doc = await hosted.image(seed=b"2")
    status, headers, _ = await hosted.put("app", digest_of(doc), doc)
    assert status == 201 and headers["Docker-Content-Digest"] == digest_of(doc)
    wrong = "sha256:" + "0" * 64
    status, _, body = await hosted.put("app", wrong, doc)
    assert (status, code_of(body)) == (400, "DIGEST_INVALID")


@pytest.mark.parametrize(
    ("body", "media_type", "code"),
    [
        (b"{not json", OCI_MANIFEST, "MANIFEST_INVALID"),
        (b"[]", OCI_MANIFEST, "MANIFEST_INVALID"),
        (b'{"schemaVersion": 1}', OCI_MANIFEST, "MANIFEST_INVALID"),
        (
            b'{"schemaVersion": 2, "mediaType": "%s", "layers": []}' % OCI_MANIFEST.encode(),
            OCI_MANIFEST,
            "MANIFEST_INVALID",
        ),
    ],
)
async def test_bad_manifests_are_manifest_invalid(
    hosted: Hosted, body: bytes, media_type: str, code: str
) -> None:
    status, _, answer = await hosted.put("app", "v1", body, media_type, who=hosted.boss)
    assert (status, code_of(answer)) == (400, code)


async def test_content_type_must_match_the_media_type(hosted: Hosted) -> None:
    doc = await hosted.image()
    for wrong in (DOCKER_MANIFEST, "application/json", OCI_INDEX):
        status, _, body = await hosted.put("app", "v1", doc, wrong, who=hosted.boss)
        assert (status, code_of(body)) == (400, "MANIFEST_INVALID")
        assert "Content-Type" in json.loads(body)["errors"][0]["detail"]["reason"]


async def test_an_oversized_manifest_is_413(hosted: Hosted) -> None:
    doc = await hosted.image()
    doc["annotations"] = {"padding": "x" * (4 * 1024 * 1024)}
    status, _, body = await hosted.put("app", "v1", doc, who=hosted.boss)
    assert (status, code_of(body)) == (413, "SIZE_INVALID")


async def test_every_referenced_blob_must_be_in_the_repository(hosted: Hosted) -> None:
    doc = await hosted.image()
    # Linked in another repository of the tenancy only: not here.
    elsewhere = await hosted.blob(b"elsewhere", repo="other")
    doc["layers"].append(elsewhere)
    status, _, body = await hosted.put("app", "v1", doc, who=hosted.boss)
    assert (status, code_of(body)) == (404, "MANIFEST_BLOB_UNKNOWN")
    assert json.loads(body)["errors"][0]["detail"]["digest"] == elsewhere["digest"]


async def test_an_index_needs_its_children_here(hosted: Hosted) -> None:
    child = await hosted.image()
    await hosted.put("app", digest_of(child), child, who=hosted.boss)
    entry = {"mediaType": OCI_MANIFEST, "digest": digest_of(child), "size": len(json.dumps(child))}
    entry["platform"] = {"os": "linux", "architecture": "amd64"}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
    assert (await hosted.put("app", "multi", index, OCI_INDEX))[0] == 201
    missing = {**entry, "digest": "sha256:" + "1" * 64}
    bad = {**index, "manifests": [entry, missing]}
    status, _, body = await hosted.put("app", "bad", bad, OCI_INDEX)
    assert (status, code_of(body)) == (404, "MANIFEST_UNKNOWN")
    # A Docker manifest list, asked for by a client that takes only image manifests.
    docker_child = {**child, "mediaType": DOCKER_MANIFEST}
    await hosted.put("app", "dchild", docker_child, DOCKER_MANIFEST)
    d_entry = {**entry, "mediaType": DOCKER_MANIFEST, "digest": digest_of(docker_child)}
    d_entry["size"] = len(json.dumps(docker_child))
    listing = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": [d_entry]}
    assert (await hosted.put("app", "dlist", listing, DOCKER_MANIFEST_LIST))[0] == 201
    status, headers, _ = await hosted.call(
        "GET", "acme/app/manifests/dlist", hosted.reader, accept=DOCKER_MANIFEST
    )
    assert status == 200 and headers["Docker-Content-Digest"] == digest_of(docker_child)


async def test_an_artifact_with_a_subject_is_a_referrer(hosted: Hosted) -> None:
    image = await hosted.image()
    await hosted.put("app", "v1", image, who=hosted.boss)
    empty = await hosted.blob(b"{}")
    artifact = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {**empty, "mediaType": EMPTY},
        "layers": [await hosted.blob(b"sbom")],
        "subject": {
            "mediaType": OCI_MANIFEST,
            "digest": digest_of(image),
            "size": len(json.dumps(image)),
        },
        "annotations": {"org.example": "yes"},
    }
    status, headers, _ = await hosted.put("app", digest_of(artifact), artifact)
    assert status == 201 and headers["OCI-Subject"] == digest_of(image)
    status, headers, body = await hosted.call(
        "GET", f"acme/app/referrers/{digest_of(image)}", hosted.reader
    )
    assert status == 200 and headers["Content-Type"].startswith(OCI_INDEX)
    found = json.loads(body)["manifests"]
    assert [(d["digest"], d["artifactType"]) for d in found] == [
        (digest_of(artifact), "application/vnd.example.sbom")
    ]
    assert found[0]["annotations"] == {"org.example": "yes"}
    filtered = f"acme/app/referrers/{digest_of(image)}?artifactType=other"
    status, headers, body = await hosted.call("GET", filtered, hosted.reader)
    assert json.loads(body)["manifests"] == [] and headers["OCI-Filters-Applied"] == "artifactType"
    # Deleted, it is no referrer any more.
    assert (await hosted.call("DELETE", f"acme/app/manifests/{digest_of(artifact)}", hosted.dev))[
        0
    ] == 202
    _, _, body = await hosted.call("GET", f"acme/app/referrers/{digest_of(image)}", hosted.reader)
    assert json.loads(body)["manifests"] == []


async def test_tags_list_and_catalog_show_hosted_content(hosted: Hosted) -> None:
    doc = await hosted.image()
    for tag in ("b", "a", "c"):
        assert (await hosted.put("app", tag, doc, who=hosted.boss))[0] == 201
    status, _, body = await hosted.call("GET", "acme/app/tags/list", hosted.reader)
    assert status == 200 and json.loads(body) == {"name": "acme/app", "tags": ["a", "b", "c"]}
    status, headers, body = await hosted.call("GET", "acme/app/tags/list?n=2", hosted.reader)
    assert json.loads(body)["tags"] == ["a", "b"]
    assert headers["Link"] == '</v2/acme/app/tags/list?last=b&n=2>; rel="next"'
    _, _, body = await hosted.call("GET", "acme/app/tags/list?last=b", hosted.reader)
    assert json.loads(body)["tags"] == ["c"]
    status, _, body = await hosted.call("GET", "_catalog", hosted.reader)
    assert status == 200 and "acme/app" in json.loads(body)["repositories"]
    # Another tenancy's administrator neither sees nor reads it.
    _, _, body = await hosted.call("GET", "_catalog", hosted.outsider)
    assert "acme/app" not in json.loads(body)["repositories"]
    status, _, _ = await hosted.call("GET", "acme/app/tags/list", hosted.outsider)
    assert status == 403


async def test_deletes(hosted: Hosted) -> None:
    doc = await hosted.image()
    digest = digest_of(doc)
    for tag in ("v1", "v2", "latest"):
        await hosted.put("app", tag, doc, who=hosted.boss)
    assert (await hosted.call("DELETE", "acme/app/manifests/latest", hosted.dev))[0] == 202
    assert (await hosted.call("GET", "acme/app/manifests/latest", hosted.reader))[0] == 404
    assert (await hosted.call("GET", "acme/app/manifests/v1", hosted.reader))[0] == 200
    status, _, body = await hosted.call("DELETE", "acme/app/manifests/latest", hosted.dev)
    assert (status, code_of(body)) == (404, "MANIFEST_UNKNOWN")
    # By digest: the manifest and every tag pointing at it.
    assert (await hosted.call("DELETE", f"acme/app/manifests/{digest}", hosted.dev))[0] == 202
    for reference in ("v1", "v2", digest):
        status, _, body = await hosted.call("GET", f"acme/app/manifests/{reference}", hosted.reader)
        assert (status, code_of(body)) == (404, "MANIFEST_UNKNOWN")
    _, _, body = await hosted.call("GET", "acme/app/tags/list", hosted.reader)
    assert json.loads(body)["tags"] == []
    # A blob: unlinked, then unknown here.
    layer = doc["layers"][0]["digest"]
    assert (await hosted.call("DELETE", f"acme/app/blobs/{layer}", hosted.dev))[0] == 202
    status, _, body = await hosted.call("GET", f"acme/app/blobs/{layer}", hosted.reader)
    assert (status, code_of(body)) == (404, "BLOB_UNKNOWN")
    status, _, body = await hosted.call("DELETE", f"acme/app/blobs/{layer}", hosted.dev)
    assert (status, code_of(body)) == (404, "BLOB_UNKNOWN")


async def test_a_blob_not_linked_here_is_unknown_and_never_fetched(hosted: Hosted) -> None:
    await hosted.put("app", "v1", await hosted.image(), who=hosted.boss)
    other = await hosted.blob(b"other repo's", repo="other")
    status, _, body = await hosted.call("GET", f"acme/app/blobs/{other['digest']}", hosted.boss)
    assert (status, code_of(body)) == (404, "BLOB_UNKNOWN")
    missing = "sha256:" + "2" * 64
    for method in ("GET", "HEAD"):
        status, _, _ = await hosted.call(method, f"acme/app/manifests/{missing}", hosted.boss)
        assert status == 404
    status, _, body = await hosted.call("GET", "acme/app/manifests/nope", hosted.boss)
    assert (status, code_of(body)) == (404, "MANIFEST_UNKNOWN")


async def test_access_anonymous_401_without_use_403(hosted: Hosted) -> None:
    doc = await hosted.image()
    status, headers, _ = await hosted.put("app", "v1", doc, who={})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer ")
    await hosted.put("app", "v1", doc, who=hosted.boss)
    for who in (hosted.reader, hosted.nobody, hosted.outsider):
        status, _, body = await hosted.put("app", "v2", doc, who=who)
        assert (status, code_of(body)) == (403, "DENIED")
        status, _, body = await hosted.call("DELETE", "acme/app/manifests/v1", who)
        assert (status, code_of(body)) == (403, "DENIED")
    assert (await hosted.call("GET", "acme/app/manifests/v2", hosted.reader))[0] == 404
    # Private by default: pulls need read.
    assert (await hosted.call("GET", "acme/app/manifests/v1", {}))[0] == 401
    assert (await hosted.call("GET", "acme/app/manifests/v1", hosted.nobody))[0] == 403


async def test_first_push_needs_manage(hosted: Hosted) -> None:
    doc = await hosted.image(repo="fresh")
    status, _, body = await hosted.put("fresh", "v1", doc, who=hosted.dev)
    assert (status, code_of(body)) == (403, "DENIED")
    assert "manage" in json.loads(body)["errors"][0]["message"]
    assert hosted.mirror.identity.repository("acme", "fresh") is None
    assert (await hosted.put("fresh", "v1", doc, who=hosted.boss))[0] == 201
    # Once it exists, use is enough.
    assert (await hosted.put("fresh", "v2", doc, who=hosted.dev))[0] == 201


async def test_cache_namespaces_can_never_be_written(hosted: Hosted) -> None:
    doc = await hosted.image()
    mirror = hosted.mirror
    for path in ("acme/hub/library/alpine", "acme/hub"):
        for method in ("PUT", "DELETE"):
            status, _, body = await hosted.call(
                method, f"{path}/manifests/v1", hosted.boss, json.dumps(doc).encode(), OCI_MANIFEST
            )
            assert (status, code_of(body)) == (403, "DENIED")
            assert "pull-through cache" in json.loads(body)["errors"][0]["message"]
    # The node-local face: proxy repositories of the default tenancy, even for its admin.
    admin = basic("admin/admin", mirror.admin_token)
    async with aiohttp.ClientSession() as http:
        url = f"{mirror.node_url}/v2/library/alpine/manifests/v1"
        async with http.put(url, data=b"{}", headers=admin) as resp:
            body = await resp.read()
            assert (resp.status, code_of(body)) == (403, "DENIED")
            assert "pull-through cache" in body.decode()
        async with http.delete(
            url.replace("manifests/v1", f"blobs/{doc['layers'][0]['digest']}"), headers=admin
        ) as resp:
            assert resp.status == 403


async def test_with_auth_off_writes_stay_405(
    mirror_factory: MirrorFactory, upstream_registry: Any
) -> None:
    mirror = await mirror_factory({upstream_registry.host: upstream_registry.url})
    async with aiohttp.ClientSession() as http:
        for method, path in (
            ("PUT", "acme/app/manifests/v1"),
            ("DELETE", "acme/app/manifests/v1"),
            ("DELETE", f"acme/app/blobs/sha256:{'3' * 64}"),
        ):
            async with http.request(method, f"{mirror.url}/v2/{path}", data=b"{}") as resp:
                assert (resp.status, code_of(await resp.read())) == (405, "UNSUPPORTED")


async def test_the_capacity_limit_never_evicts_hosted_images(
    mirror_factory: MirrorFactory, upstream_registry: Any
) -> None:
    mirror = await mirror_factory(
        {upstream_registry.host: upstream_registry.url}, retention={"max_size": 10_000_000}
    )
    hosted = mirror.app[HOSTED]
    where = hosted_target("acme", "app", "acme/app")
    blobs: list[dict[str, Any]] = []
    for data in (b'{"config": 1}', b"layer" * 1000):
        digest = Digest.of(data)
        await mirror.app[CACHE].put(digest, data)
        mirror.services.metadata.link(where.upstream, where.repo, [digest])
        blobs.append({"mediaType": LAYER, "digest": str(digest), "size": len(data)})
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": blobs[0], "layers": blobs[1:]}
    body = json.dumps(doc).encode()
    pushed = await hosted.put_manifest(where, "v1", body, OCI_MANIFEST)
    mirror.clock.advance(365 * 24 * 3600)

    await mirror.retention.evict_to(0)

    found = await hosted.manifest(where, "v1", [])
    assert found.digest == pushed.digest and found.body == body
    for blob in blobs:
        assert await hosted.holds_blob(where, Digest.parse(blob["digest"]))


async def test_a_pushed_blob_survives_an_orphan_sweep_before_its_manifest(
    mirror_factory: MirrorFactory, upstream_registry: Any
) -> None:
    mirror = await mirror_factory(
        {upstream_registry.host: upstream_registry.url}, retention={"max_size": 10_000_000}
    )
    hosted, cache = mirror.app[HOSTED], mirror.app[CACHE]
    where = hosted_target("acme", "app", "acme/app")
    blobs: list[dict[str, Any]] = []
    for data in (b'{"config": 2}', b"pushed layer" * 500):
        digest = Digest.of(data)
        await cache.put(digest, data)  # an upload committed: stored and linked, no manifest yet
        mirror.services.metadata.link(where.upstream, where.repo, [digest])
        blobs.append({"mediaType": LAYER, "digest": str(digest), "size": len(data)})
    stray = b"a cached blob no manifest refers to"
    await cache.put(Digest.of(stray), stray)

    await mirror.retention.evict_to(0)  # the capacity limit's orphan sweep

    assert await cache.stat(Digest.of(stray)) is None, "the sweep ran and took the real orphan"
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": blobs[0], "layers": blobs[1:]}
    pushed = await hosted.put_manifest(where, "v1", json.dumps(doc).encode(), OCI_MANIFEST)
    assert (await hosted.manifest(where, "v1", [])).digest == pushed.digest
