"""The mirror-behaviour checks. Each takes the :class:`Context` and returns a
:class:`~mirror.check.report.CheckResult`; they run in :data:`ORDER`, because each leaves the
target's cache in the state the next one expects (the seeded image's blobs are shared out:
layer 0 for ``Range``, 1 for the herd, 2 for the leader, 3 for wrong bytes, 4 and the
config for the header checks)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from mirror.check.http import Answer, fetch
from mirror.check.proxy import CountingProxy
from mirror.check.report import CheckResult
from mirror.check.seed import SeededImage
from mirror.oci.digest import Digest

CONTAINERD_ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json, */*"
)
UNKNOWN_NS = "unknown.invalid"
FAST = 2.0  # seconds: what "answered fast" means for an unknown namespace


@dataclass
class Context:
    """Everything a check needs: the client, the target, the proxy and the seeded image."""

    http: aiohttp.ClientSession
    target: str
    proxy: CountingProxy
    image: SeededImage
    ns: str | None
    tag_ttl: float
    timeout: float
    herd: int = 8

    def url(self, kind: str, reference: str, ns: str | None = None) -> str:
        """``TARGET/v2/REPO/{manifests|blobs}/REF`` with ``?ns=`` when the target routes."""
        query = ns if ns is not None else self.ns
        suffix = f"?ns={query}" if query else ""
        return f"{self.target}/v2/{self.image.repo}/{kind}/{reference}{suffix}"

    async def get(self, kind: str, reference: str, **options: object) -> Answer:
        """``GET`` one manifest or blob from the target."""
        ns = options.pop("ns", None)
        return await fetch(
            self.http,
            str(options.pop("method", "GET")),
            self.url(kind, reference, ns if isinstance(ns, str) else None),
            seconds=self.timeout,
            **options,  # type: ignore[arg-type]
        )

    def blob_ok(self, digest: str, answer: Answer) -> bool:
        """A complete 200 with exactly the blob's bytes."""
        return answer.status == 200 and not answer.cut and answer.body == self.image.blobs[digest]


def _result(name: str, ok: bool, summary: str, **evidence: object) -> CheckResult:
    return CheckResult(name, "pass" if ok else "fail", summary, dict(evidence))


def _manifest_path(ctx: Context, reference: str) -> str:
    return f"/v2/{ctx.image.repo}/manifests/{reference}"


async def ns_routing(ctx: Context) -> CheckResult:
    """The seeded tag is served through ``?ns=`` from the proxy; an unknown ``ns`` is answered
    fast with a client error and never reaches the upstream."""
    first = await ctx.get("manifests", ctx.image.tag, headers={"Accept": CONTAINERD_ACCEPT})
    forwarded = ctx.proxy.count("GET", _manifest_path(ctx, "")) + ctx.proxy.count(
        "HEAD", _manifest_path(ctx, "")
    )
    before = sum(ctx.proxy.counts.values())
    unknown = await ctx.get(
        "manifests", ctx.image.tag, ns=UNKNOWN_NS, headers={"Accept": CONTAINERD_ACCEPT}
    )
    leaked = sum(ctx.proxy.counts.values()) - before
    served = first.status == 200 and first.body == ctx.image.image.manifest_bytes
    refused = unknown.status is not None and 400 <= unknown.status < 500
    ok = served and forwarded > 0 and refused and unknown.elapsed < FAST and leaked == 0
    return _result(
        "ns-routing",
        ok,
        f"ns={ctx.ns}: {first.brief()}; ns={UNKNOWN_NS}: {unknown.brief()} in {unknown.elapsed}s",
        upstream_manifest_requests=forwarded,
        unknown_ns_upstream_requests=leaked,
        unknown_ns_body=unknown.body[:200].decode(errors="replace"),
    )


async def head_by_tag(ctx: Context) -> CheckResult:
    """containerd's first request: ``HEAD`` by tag with its Accept list answers 200 with the
    digest, length and a type from the list (else containerd falls back or fails)."""
    answer = await ctx.get(
        "manifests", ctx.image.tag, method="HEAD", headers={"Accept": CONTAINERD_ACCEPT}
    )
    manifest = ctx.image.image.manifest
    digest, length = answer.header("Docker-Content-Digest"), answer.header("Content-Length")
    media_type = answer.header("Content-Type")
    ok = (
        answer.status == 200
        and digest == manifest.digest
        and length == str(manifest.size)
        and media_type in CONTAINERD_ACCEPT.split(", ")
    )
    return _result(
        "head-by-tag",
        ok,
        f"HEAD {answer.brief()}",
        docker_content_digest=digest,
        content_length=length,
        content_type=media_type,
        expected=f"{manifest.digest} {manifest.size}",
    )


async def _range(ctx: Context, digest: str) -> tuple[bool, Answer, str]:
    data = ctx.image.blobs[digest]
    offset = len(data) // 2
    answer = await ctx.get("blobs", digest, headers={"Range": f"bytes={offset}-"})
    expected = f"bytes {offset}-{len(data) - 1}/{len(data)}"
    ok = (
        answer.status == 206
        and answer.header("Content-Range") == expected
        and answer.body == data[offset:]
    )
    return ok, answer, expected


async def range_resume(ctx: Context) -> CheckResult:
    """``Range: bytes=N-`` answers 206 with ``Content-Range`` and the right bytes, on a cold
    blob and again once it is cached."""
    digest = ctx.image.layers[0]
    cold_ok, cold, expected = await _range(ctx, digest)
    whole = await ctx.get("blobs", digest)
    warm_ok, warm, _ = await _range(ctx, digest)
    return _result(
        "range-resume",
        cold_ok and warm_ok and ctx.blob_ok(digest, whole),
        f"cold {cold.brief()}, warm {warm.brief()}",
        cold_content_range=cold.header("Content-Range"),
        warm_content_range=warm.header("Content-Range"),
        expected=expected,
    )


async def herd(ctx: Context) -> CheckResult:
    """``herd`` clients GET one cold blob at once (the origin slowed down): all complete, and
    the upstream sees one GET (the goal)."""
    digest = ctx.image.layers[1]
    ctx.proxy.mode.slow = 0.01
    try:
        answers = await asyncio.gather(*(ctx.get("blobs", digest) for _ in range(ctx.herd)))
    finally:
        ctx.proxy.mode.slow = 0.0
    upstream = ctx.proxy.count("GET", digest)
    complete = sum(ctx.blob_ok(digest, a) for a in answers)
    return _result(
        "herd",
        complete == ctx.herd and upstream == 1,
        f"{complete}/{ctx.herd} complete, {upstream} upstream GET(s)",
        upstream_gets=upstream,
        statuses=[a.brief() for a in answers],
    )


async def leader_disconnect(ctx: Context) -> CheckResult:
    """The first client of a cold blob drops after one chunk: the clients that joined it still
    complete, and the blob is cached (a later GET costs the upstream nothing)."""
    digest = ctx.image.layers[2]
    ctx.proxy.mode.slow = 0.02
    try:
        leader = asyncio.create_task(ctx.get("blobs", digest, read_bytes=1))
        await asyncio.sleep(0.1)
        followers = await asyncio.gather(*(ctx.get("blobs", digest) for _ in range(3)))
        dropped = await leader
    finally:
        ctx.proxy.mode.slow = 0.0
    during = ctx.proxy.count("GET", digest)
    later = await ctx.get("blobs", digest)
    after = ctx.proxy.count("GET", digest)
    complete = sum(ctx.blob_ok(digest, a) for a in followers)
    ok = complete == len(followers) and ctx.blob_ok(digest, later) and after == during
    return _result(
        "leader-disconnect",
        ok,
        f"{complete}/{len(followers)} followers complete; later GET {later.brief()}",
        leader=f"{dropped.brief()}, dropped after {len(dropped.body)} bytes",
        upstream_gets_during=during,
        upstream_gets_after_later_get=after,
    )


async def wrong_bytes(ctx: Context) -> CheckResult:
    """The origin sends a cold blob's bytes flipped: the client never gets a complete 200 of
    them, and once the origin is right again the blob is served right (nothing poisoned)."""
    digest = ctx.image.layers[3]
    ctx.proxy.mode.corrupt.add(digest)
    try:
        bad = await ctx.get("blobs", digest)
    finally:
        ctx.proxy.mode.corrupt.discard(digest)
    delivered = bad.status == 200 and not bad.cut
    poisoned = delivered and str(Digest.of(bad.body)) != digest
    healed = await ctx.get("blobs", digest)
    return _result(
        "wrong-bytes",
        not poisoned and ctx.blob_ok(digest, healed),
        f"corrupt origin: {bad.brief()} ({len(bad.body)} bytes); origin fixed: {healed.brief()}",
        completed_200_with_wrong_bytes=poisoned,
        healed=ctx.blob_ok(digest, healed),
    )


async def _pull_tag(ctx: Context) -> Answer:
    """containerd's resolve: ``HEAD`` by tag, then ``GET`` of the manifest by digest."""
    head = await ctx.get(
        "manifests", ctx.image.tag, method="HEAD", headers={"Accept": CONTAINERD_ACCEPT}
    )
    await ctx.get(
        "manifests", ctx.image.image.manifest_digest, headers={"Accept": CONTAINERD_ACCEPT}
    )
    return head


def _tag_requests(ctx: Context) -> int:
    path = _manifest_path(ctx, ctx.image.tag)
    return ctx.proxy.count("GET", path) + ctx.proxy.count("HEAD", path)


async def tag_revalidation(ctx: Context, pulls: int = 3) -> CheckResult:
    """Pulls within the tag TTL cost the upstream no request; one pull after it costs one or
    two (a HEAD, a GET if the tag moved)."""
    await _pull_tag(ctx)
    before = _tag_requests(ctx)
    for _ in range(pulls):
        await _pull_tag(ctx)
    within = _tag_requests(ctx) - before
    await asyncio.sleep(ctx.tag_ttl + 0.5)
    before = _tag_requests(ctx)
    after_head = await _pull_tag(ctx)
    after = _tag_requests(ctx) - before
    return _result(
        "tag-revalidation",
        within == 0 and 1 <= after <= 2 and after_head.status == 200,
        f"{within / pulls:g} upstream request(s) per pull within the TTL, {after} after it",
        pulls_within_ttl=pulls,
        upstream_requests_within_ttl=within,
        upstream_requests_after_ttl=after,
        tag_ttl=ctx.tag_ttl,
    )


def _spec_error(answer: Answer) -> bool:
    return answer.status in (404, 502, 503, 504) and b'"errors"' in answer.body


async def stale_if_error(ctx: Context) -> CheckResult:
    """With the origin answering 503: the cached tag (past its TTL) and a cached blob are still
    served; an uncached tag and blob get a spec error (404/5xx with an errors body), not a
    hang."""
    warm = ctx.image.image.config_digest
    await ctx.get("blobs", warm)
    ctx.proxy.mode.down = True
    try:
        await asyncio.sleep(ctx.tag_ttl + 0.5)
        tag = await ctx.get("manifests", ctx.image.tag, headers={"Accept": CONTAINERD_ACCEPT})
        blob = await ctx.get("blobs", warm)
        cold_tag = await ctx.get(
            "manifests", ctx.image.uncached_tag, headers={"Accept": CONTAINERD_ACCEPT}
        )
        cold_blob = await ctx.get("blobs", ctx.image.uncached_blob)
    finally:
        ctx.proxy.mode.down = False
    stale = tag.status == 200 and tag.body == ctx.image.image.manifest_bytes
    ok = stale and ctx.blob_ok(warm, blob) and _spec_error(cold_tag) and _spec_error(cold_blob)
    return _result(
        "stale-if-error",
        ok,
        f"origin down: tag {tag.brief()}, blob {blob.brief()}; "
        f"uncached tag {cold_tag.brief()}, uncached blob {cold_blob.brief()}",
        uncached_tag_body=cold_tag.body[:200].decode(errors="replace"),
        uncached_blob_seconds=cold_blob.elapsed,
    )


async def exact_headers(ctx: Context) -> CheckResult:
    """``Docker-Content-Digest`` and ``Content-Length`` are exact on manifest and blob ``GET``
    and ``HEAD`` (by digest)."""
    manifest = ctx.image.image.manifest
    config, last = ctx.image.image.config, ctx.image.image.layers[4]
    targets = [("manifests", manifest.digest, manifest.size)] + [
        ("blobs", blob.digest, blob.size) for blob in (config, last)
    ]
    wrong: list[str] = []
    for kind, digest, size in targets:
        for method in ("GET", "HEAD"):
            answer = await ctx.get(
                kind, digest, method=method, headers={"Accept": CONTAINERD_ACCEPT}
            )
            got = (answer.header("Docker-Content-Digest"), answer.header("Content-Length"))
            body_ok = method == "HEAD" or len(answer.body) == size
            if answer.status != 200 or got != (digest, str(size)) or not body_ok:
                wrong.append(f"{method} {kind}/{digest[:19]}: {answer.brief()} {got}")
    return _result(
        "exact-headers",
        not wrong,
        f"{2 * len(targets) - len(wrong)}/{2 * len(targets)} answers exact",
        wrong=wrong,
    )


Check = Callable[[Context], Awaitable[CheckResult]]

ORDER: tuple[tuple[str, Check], ...] = (
    ("ns-routing", ns_routing),
    ("head-by-tag", head_by_tag),
    ("exact-headers", exact_headers),
    ("range-resume", range_resume),
    ("herd", herd),
    ("leader-disconnect", leader_disconnect),
    ("wrong-bytes", wrong_bytes),
    ("tag-revalidation", tag_revalidation),
    ("stale-if-error", stale_if_error),
)
