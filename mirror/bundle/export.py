"""``mirror export``: the images of a list of references, as one image layout.

Export is a registry client of the mirror: each manifest and blob comes through the mirror's
own serving path (from the cache, or filled from the upstream when the site is connected,
with the mirror's verification and single-flight), and is checked again as it is written.
When the mirror runs in-process, a blob its store already holds is read from the store
directly (``CachedBlobs``: the server's own verified reader) and only misses go over HTTP. The
walk is planned first (manifests are small and kept in memory) so the progress bar knows the
bytes; blobs then stream one at a time to the bundle.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Collection
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mirror.bundle.fetched import CHUNK
from mirror.bundle.readahead import Opened, read_ahead
from mirror.bundle.sink import BundleSink
from mirror.oci.digest import Digest
from mirror.oci.layout import REF_NAME
from mirror.oci.media import INDEX_TYPES
from mirror.oci.reflist import ImageRef

if TYPE_CHECKING:
    # Only named: ``--mirror`` exports read no store (and load no cipher).
    from mirror.bundle.cached import CachedBlob
    from mirror.bundle.fetched import FetchedManifest

# One thing to write: its digest, the image it is taken from, its size, and its body when
# it is a manifest (kept in memory by the plan).
Job = tuple[Digest, ImageRef, int, bytes | None]

# Called with (bytes done, bytes total) as the export goes.
OnProgress = Callable[[int, int], None]


class ImageSource(Protocol):
    """Where an export reads images: the mirror over HTTP (``RegistryClient``), or its cache
    with the serving path behind it."""

    async def manifest(self, host: str, repo: str, reference: str) -> FetchedManifest:
        """The manifest ``reference`` of ``host/repo``, hashed; raises ``FetchFailed``."""
        ...

    async def referrers(self, host: str, repo: str, digest: Digest) -> list[dict[str, Any]]:
        """The descriptors of the manifests whose subject is ``digest``."""
        ...

    def blob(self, host: str, repo: str, digest: Digest) -> AsyncGenerator[bytes, None]:
        """The blob's bytes in chunks (the caller verifies them as they pass)."""
        ...


class StoredBlobs(Protocol):
    """Blobs read from a blob store directly (``CachedBlobs``)."""

    async def open(self, digest: Digest) -> CachedBlob | None:
        """The blob's bytes, or ``None`` when the store holds no sound copy."""
        ...


@dataclass
class ImagePlan:
    """One reference's image: every manifest (body) and blob (size) it takes."""

    source: ImageRef
    root: dict[str, Any]
    manifests: dict[Digest, bytes] = field(default_factory=dict)
    blobs: dict[Digest, int] = field(default_factory=dict)
    platforms: list[str] = field(default_factory=list)
    referrers: list[dict[str, Any]] = field(default_factory=list)

    def size(self) -> int:
        """Bytes of the image's distinct manifests and blobs."""
        return sum(len(b) for b in self.manifests.values()) + sum(self.blobs.values())

    def summary(self) -> dict[str, Any]:
        """The image's line in the bundle manifest."""
        return {
            "reference": str(self.source),
            "digest": self.root["digest"],
            "mediaType": self.root["mediaType"],
            "size": self.size(),
            "platforms": self.platforms,
            "referrers": [r["digest"] for r in self.referrers],
        }


def platform_of(descriptor: dict[str, Any]) -> str:
    """``os/arch[/variant]`` of an index entry ("" when it names none)."""
    p = descriptor.get("platform")
    if not isinstance(p, dict):
        return ""
    parts = [str(p.get("os", "")), str(p.get("architecture", "")), str(p.get("variant", ""))]
    return "/".join(x for x in parts if x)


def chosen(platform: str, wanted: Collection[str]) -> bool:
    """Whether an entry of ``platform`` is exported (all when ``wanted`` is empty;
    ``linux/arm64`` also takes ``linux/arm64/v8``)."""
    return not wanted or any(platform == w or platform.startswith(f"{w}/") for w in wanted)


class Planner:
    """Walks images through ``client``: the platforms ``wanted`` (all if empty), and the
    referrers of each image when ``referrers`` is set."""

    def __init__(self, client: ImageSource, wanted: Collection[str], referrers: bool) -> None:
        self._client = client
        self._wanted = wanted
        self._referrers = referrers

    async def plan(self, source: ImageRef) -> ImagePlan:
        """The image of ``source``; raises ``FetchFailed``."""
        top = await self._client.manifest(source.registry, source.repository, source.reference)
        media_type = _media_type(top.body, top.media_type)
        root = {"mediaType": media_type, "digest": str(top.digest), "size": len(top.body)}
        plan = ImagePlan(source, root)
        await self._walk(plan, top.digest, top.body, media_type)
        if self._referrers:
            await self._add_referrers(plan)
        return plan

    async def _walk(self, plan: ImagePlan, digest: Digest, body: bytes, media_type: str) -> None:
        plan.manifests[digest] = body
        doc = json.loads(body)
        if media_type in INDEX_TYPES:
            for entry in doc.get("manifests", []):
                platform = platform_of(entry)
                if not chosen(platform, self._wanted):
                    continue
                child = await self._client.manifest(
                    plan.source.registry, plan.source.repository, entry["digest"]
                )
                if platform:
                    plan.platforms.append(platform)
                await self._walk(plan, child.digest, child.body, _media_type(child.body, ""))
            return
        for descriptor in [doc.get("config"), *doc.get("layers", []), *doc.get("blobs", [])]:
            if isinstance(descriptor, dict):
                plan.blobs[Digest.parse(descriptor["digest"])] = int(descriptor["size"])

    async def _add_referrers(self, plan: ImagePlan) -> None:
        for subject in list(plan.manifests):
            found = await self._client.referrers(
                plan.source.registry, plan.source.repository, subject
            )
            for descriptor in found:
                digest = Digest.parse(descriptor["digest"])
                if digest in plan.manifests:
                    continue
                fetched = await self._client.manifest(
                    plan.source.registry, plan.source.repository, str(digest)
                )
                media_type = _media_type(fetched.body, descriptor.get("mediaType", ""))
                plan.referrers.append({**descriptor, "mediaType": media_type})
                await self._walk(plan, digest, fetched.body, media_type)


def _media_type(body: bytes, announced: str) -> str:
    doc = json.loads(body)
    found = doc.get("mediaType") if isinstance(doc, dict) else None
    return str(found or announced.split(";")[0].strip())


def index_entries(plans: list[ImagePlan]) -> list[dict[str, Any]]:
    """``index.json`` entries: each image named by its full source reference, then each
    referrer (unnamed: its ``subject`` says which image it belongs to)."""
    entries = [{**plan.root, "annotations": {REF_NAME: str(plan.source)}} for plan in plans]
    seen = {e["digest"] for e in entries}
    for plan in plans:
        for referrer in plan.referrers:
            if referrer["digest"] not in seen:
                seen.add(referrer["digest"])
                entries.append(referrer)
    return entries


@dataclass
class Exporter:
    """Writes planned images into ``sink``: blobs from ``cached`` when it holds them, the rest
    (and every blob without ``cached``) from ``client``."""

    client: ImageSource
    sink: BundleSink
    on_progress: OnProgress = lambda done, total: None
    cached: StoredBlobs | None = None
    # How many blobs are read at once, ahead of the one being written (``read_ahead``).
    depth: int = 4
    written: int = 0
    reused: int = 0
    from_store: int = 0

    async def write(self, plans: list[ImagePlan]) -> dict[str, Any]:
        """Every manifest and blob not yet in the bundle, then ``index.json``; returns the
        bundle manifest (references, digests, sizes)."""
        jobs: dict[Digest, tuple[ImageRef, int, bytes | None]] = {}
        for plan in plans:
            for digest, body in plan.manifests.items():
                jobs.setdefault(digest, (plan.source, len(body), body))
            for digest, size in plan.blobs.items():
                jobs.setdefault(digest, (plan.source, size, None))
        todo = [(d, *job) for d, job in jobs.items() if not self._kept(d, job[1])]
        total = sum(size for _, _, size, _ in todo)
        self.on_progress(0, total)
        done = 0
        async with aclosing(read_ahead(todo, self._open, depth=self.depth, ahead=_small)) as turns:
            async for turn in turns:
                digest, _, size, _ = turn.job
                async with aclosing(turn.chunks) as chunks:
                    await self.sink.write(digest, size, chunks, authenticated=turn.authenticated)
                done += size
                self.written += size
                self.on_progress(done, total)
        entries = self.sink.finish(index_entries(plans))
        return {
            "images": [plan.summary() for plan in plans],
            "index": len(entries),
            "blobs": len(jobs),
            "bytes": sum(size for _, size, _ in jobs.values()),
            "written": self.written,
            "reused": self.reused,
            "from_store": self.from_store,
        }

    def _kept(self, digest: Digest, size: int) -> bool:
        if self.sink.has(digest):
            self.reused += size
            return True
        return False

    async def _open(self, job: Job) -> Opened:
        """The job's bytes: a manifest's body; a blob from the store when it holds it
        (authenticated chunks of the encrypted store are not hashed again), else through the
        mirror (hashed as written)."""
        digest, source, _, small = job
        if small is not None:
            return Opened(_one(small))
        local = await self.cached.open(digest) if self.cached is not None else None
        if local is not None:
            return Opened(self._counted(local.chunks), local.authenticated)
        return Opened(self.client.blob(source.registry, source.repository, digest))

    async def _counted(self, chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        async with aclosing(chunks):
            async for chunk in chunks:
                self.from_store += len(chunk)
                yield chunk


def _small(job: Job) -> bool:
    """Whether a job is read ahead of its turn: one piece at most (a manifest, a config, most
    layers of a many-layer image). A larger blob is read only at its turn: fetched early
    beside the one being written, it slowed a cold export of one large layer by a third."""
    return job[2] <= CHUNK


async def _one(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body
