"""The metadata store of a regional tier: every role of ``mirror.db.roles`` in PostgreSQL,
shared by the replicas.

The roles are synchronous; asyncpg runs on a private loop thread (``LoopThread``) and each
call blocks its caller for one round trip. Hot reads (tags, manifests, links) are answered
from a memo that notifications keep exact (``SharedMemo``). Writes that depend on what is
stored are single statements or server-side functions, so replicas never race.
Last-pull times are batched in memory and flushed as the diskcache store does; the flush
keeps the later of two replicas' times.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from mirror.db.metadata import (
    TAG_HISTORY_LIMIT,
    CachedResponse,
    ManifestRecord,
    RepositoryRecords,
    TagMove,
    TagRecord,
)
from mirror.db.postgres.bridge import LoopThread
from mirror.db.postgres.connect import Listener, PostgresSettings, open_pool
from mirror.db.postgres.memo import SharedMemo
from mirror.db.postgres.migrate import migrate
from mirror.db.postgres.queries import Q
from mirror.db.roles import MetadataStore, MetadataUnavailable, SnapshotRows
from mirror.errors import RegistryError
from mirror.oci.digest import Digest

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a call to the database may fail with; each becomes ``MetadataUnavailable``.
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class PostgresMetadata(MetadataStore):
    """The shared metadata store; ``open`` connects (and migrates), ``close`` flushes and
    disconnects. ``directory`` is the replica's own data directory (readiness checks it)."""

    def __init__(
        self,
        settings: PostgresSettings,
        directory: Path,
        *,
        memo_size: int = 50_000,
        origin: str | None = None,
    ) -> None:
        self.directory = directory
        self._settings = settings
        self._memo = SharedMemo(origin or f"mirror-{secrets.token_hex(6)}", memo_size)
        self._pending_pulls: dict[tuple[str, str, str], float] = {}
        self._thread = LoopThread()
        self._pool: asyncpg.Pool | None = None
        self._listener = Listener(settings, self._memo)

    @classmethod
    def open(
        cls, settings: PostgresSettings, directory: Path, *, migrate_schema: bool = True
    ) -> PostgresMetadata:
        """Connect (applying pending migrations first, unless told not to); raises
        ``MetadataUnavailable`` naming why the database cannot be used."""
        store = cls(settings, directory)
        try:
            store._call(store._start(migrate_schema))
        except BaseException:
            store._thread.close()
            raise
        return store

    async def _start(self, migrate_schema: bool) -> None:
        self._pool = await open_pool(self._settings, self._memo.origin)
        if migrate_schema:
            async with self._pool.acquire() as connection:
                done = await migrate(connection)
            for migration in done:
                log.info("applied metadata migration %04d_%s", migration.version, migration.name)
        await self._listener.start()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self._thread.call(coro, self._settings.call_timeout)
        except _FAILURES as exc:
            raise MetadataUnavailable(f"metadata database: {type(exc).__name__}: {exc}") from exc

    def _run(self, method: str, query: str, *args: Any) -> Any:
        """One statement on a pooled connection (``method``: execute, fetch, fetchrow, ...)."""
        return self._call(self._on_pool(method, query, *args))

    async def _on_pool(self, method: str, query: str, *args: Any) -> Any:
        assert self._pool is not None
        async with self._pool.acquire() as connection:
            return await getattr(connection, method)(query, *args)

    # Tags -------------------------------------------------------------------------------

    def tag(self, upstream: str, repo: str, tag: str) -> TagRecord | None:
        """The cached record of ``repo:tag`` at ``upstream``."""
        key = (upstream, repo, tag)
        memo = self._memo.get("tag", key)
        if memo is not None:
            return memo  # type: ignore[no-any-return]
        generation = self._memo.generation()
        row = self._run("fetchrow", Q.tag, upstream, repo, tag)
        if row is None:
            return None
        record = TagRecord(row[0], row[1], row[2], row[3])
        self._memo.put("tag", key, record, generation)
        return record

    def set_tag(self, upstream: str, repo: str, tag: str, record: TagRecord) -> None:
        """Record where a tag points (the move, if any, and the catalog entry in the same
        server-side step)."""
        self._memo.drop("tag", (upstream, repo, tag))
        self._run(
            "execute",
            Q.set_tag,
            upstream,
            repo,
            tag,
            record.digest,
            record.media_type,
            record.size,
            record.fetched_at,
            TAG_HISTORY_LIMIT,
        )
        self._memo.put("tag", (upstream, repo, tag), record)

    def delete_tag(self, upstream: str, repo: str, tag: str, at: float) -> TagRecord | None:
        """Remove tag ``repo:tag`` (its move is recorded); the record it had, or ``None``."""
        self._memo.drop("tag", (upstream, repo, tag))
        row = self._call(self._delete_tag(upstream, repo, tag, at))
        return TagRecord(row[0], row[1], row[2], row[3]) if row is not None else None

    async def _delete_tag(self, upstream: str, repo: str, tag: str, at: float) -> Any:
        assert self._pool is not None
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(Q.delete_tag, upstream, repo, tag)
            if row is not None:
                await connection.execute(
                    Q.record_move, upstream, repo, tag, row[0], None, at, TAG_HISTORY_LIMIT
                )
            return row

    def touch_tag(self, upstream: str, repo: str, tag: str, fetched_at: float) -> None:
        """Note that upstream confirmed the tag unchanged at ``fetched_at``."""
        self._memo.drop("tag", (upstream, repo, tag))
        row = self._run("fetchrow", Q.touch_tag, upstream, repo, tag, fetched_at)
        if row is not None:
            self._memo.put("tag", (upstream, repo, tag), TagRecord(row[0], row[1], row[2], row[3]))

    def tags(self) -> Iterator[tuple[str, str, str, TagRecord]]:
        """Every cached ``(upstream, repo, tag, record)``."""
        for row in self._run("fetch", Q.tags):
            yield row[0], row[1], row[2], TagRecord(row[3], row[4], row[5], row[6])

    # Manifests --------------------------------------------------------------------------

    def manifest(self, digest: Digest) -> ManifestRecord | None:
        """The record of a cached manifest."""
        memo = self._memo.get("manifest", str(digest))
        if memo is not None:
            return memo  # type: ignore[no-any-return]
        generation = self._memo.generation()
        row = self._run("fetchrow", Q.manifest, str(digest))
        if row is None:
            return None
        record = ManifestRecord(row[0], row[1], tuple(row[2]), row[3])
        self._memo.put("manifest", str(digest), record, generation)
        return record

    def set_manifest(self, digest: Digest, record: ManifestRecord) -> None:
        """Record a cached manifest (the same digest is the same content: last write wins)."""
        self._memo.drop("manifest", str(digest))
        self._run(
            "execute",
            Q.set_manifest,
            str(digest),
            record.media_type,
            record.size,
            list(record.references),
            record.cached_at,
        )
        self._memo.put("manifest", str(digest), record)

    def delete_manifest(self, digest: Digest) -> None:
        """Forget a manifest (nothing happens if it is not cached)."""
        self._memo.drop("manifest", str(digest))
        self._run("execute", Q.delete_manifest, str(digest))

    def manifests(self) -> Iterator[tuple[Digest, ManifestRecord]]:
        """Every cached ``(digest, record)``."""
        for row in self._run("fetch", Q.manifests):
            yield Digest.parse(row[0]), ManifestRecord(row[1], row[2], tuple(row[3]), row[4])

    # Repositories and links -------------------------------------------------------------

    def add_repository(self, upstream: str, repo: str) -> None:
        """Note that the repository is cached."""
        self._run("execute", Q.add_repository, upstream, repo)

    def repositories(self) -> Iterator[tuple[str, str]]:
        """Every cached ``(upstream, repo)``."""
        for row in self._run("fetch", Q.repositories):
            yield row[0], row[1]

    def link(self, upstream: str, repo: str, digests: Iterable[Digest]) -> None:
        """Record that ``repo`` at ``upstream`` references these manifests and blobs (one
        ``INSERT ... ON CONFLICT DO NOTHING``: links only ever accumulate)."""
        texts = sorted({str(d) for d in digests})
        if texts:
            self._run("execute", Q.link, upstream, repo, texts)
            for text in texts:
                self._memo.put("link", (upstream, repo, text), True)

    def linked(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Whether ``repo`` at ``upstream`` is known to reference ``digest`` (a proven link is
        memoised; an unknown one is asked every time, another replica may prove it)."""
        key = (upstream, repo, str(digest))
        if self._memo.get("link", key):
            return True
        generation = self._memo.generation()
        found = bool(self._run("fetchval", Q.linked, upstream, repo, str(digest)))
        if found:
            self._memo.put("link", key, True, generation)
        return found

    def links_under(self, prefix: str) -> Iterator[tuple[str, str, Digest]]:
        """Every ``(upstream, repo, digest)`` link of an upstream key starting with
        ``prefix``."""
        for row in self._run("fetch", Q.links_under, prefix):
            digest = _digest_or_none(row[2])
            if digest is not None:
                yield row[0], row[1], digest

    def drop_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Forget that ``repo`` at ``upstream`` references ``digest``; whether it did."""
        self._memo.drop("link", (upstream, repo, str(digest)))
        return self._run("fetchval", Q.drop_link, upstream, repo, str(digest)) is not None

    def bury(self, upstream: str, repo: str, digest: Digest, at: float) -> None:
        """Note that a client (or a policy) deleted ``digest`` from ``repo`` at ``at``."""
        self._run("execute", Q.bury, upstream, repo, str(digest), at)

    def unbury(self, upstream: str, repo: str, digest: Digest) -> None:
        """Forget the deletion note of ``digest`` in ``repo``."""
        self._run("execute", Q.unbury, upstream, repo, str(digest))

    def repository_records(self, prefix: str) -> RepositoryRecords:
        """The links, tag targets and deletion notes of every upstream key starting with
        ``prefix`` (the hosted repositories', for their garbage collection)."""
        found = RepositoryRecords()
        for upstream, repo, digest in self.links_under(prefix):
            found.links.setdefault((upstream, repo), set()).add(digest)
        for row in self._run("fetch", Q.tagged_under, prefix):
            found.tags.setdefault((row[0], row[1]), set()).add(row[2])
        for row in self._run("fetch", Q.deletions_under, prefix):
            deleted = _digest_or_none(row[2])
            if deleted is not None:
                found.deleted.setdefault((row[0], row[1]), {})[deleted] = float(row[3])
        return found

    def unlink(self, upstream: str, repo: str) -> int:
        """Forget every link of ``repo`` at ``upstream``; returns how many."""
        self._memo.clear()
        return int(self._run("fetchval", Q.unlink, upstream, repo))

    # Tag history, eviction, forgetting ---------------------------------------------------

    def tag_history(self, upstream: str, repo: str) -> tuple[TagMove, ...]:
        """Every recorded move of a tag of ``repo``, oldest first."""
        rows = self._run("fetch", Q.tag_history, upstream, repo)
        return tuple(TagMove(row[0], row[1], row[2], row[3]) for row in rows)

    def evict_image(
        self,
        upstream: str,
        repo: str,
        digest: Digest,
        tags: Iterable[str] | None = None,
        *,
        history: bool = True,
    ) -> tuple[str, ...]:
        """Forget image ``digest`` in ``repo``: its tags there (those of ``tags`` if given),
        its last pull and (unless ``history`` is false) its tag moves, in one transaction;
        returns the tags removed."""
        stored = str(digest)
        self._pending_pulls.pop((upstream, repo, stored), None)
        names = None if tags is None else list(tags)
        removed = self._call(self._evict(upstream, repo, stored, names, history))
        for tag in removed:
            self._memo.drop("tag", (upstream, repo, tag))
        return tuple(sorted(removed))

    async def _evict(
        self, upstream: str, repo: str, stored: str, tags: list[str] | None, history: bool
    ) -> list[str]:
        assert self._pool is not None
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(Q.evict_tags, upstream, repo, stored, tags)
            await connection.execute(Q.drop_pull, upstream, repo, stored)
            if history:
                await connection.execute(Q.drop_moves_of, upstream, repo, stored)
            return [row[0] for row in rows]

    def prune_history(self, upstream: str, repo: str, digests: Iterable[Digest]) -> None:
        """Forget the tag moves of ``repo`` to or from ``digests``, in one statement."""
        self._run("execute", Q.drop_moves_of_all, upstream, repo, [str(d) for d in digests])

    def forget_empty_repositories(self, candidates: Iterable[tuple[str, str]]) -> set[str]:
        """Forget those of ``candidates`` with no tag or last pull left (here or batched in
        this process), in one statement; returns ``HOST/REPO`` names."""
        wanted = set(candidates)
        busy = {key[:2] for key in self._pending_pulls if key[:2] in wanted}
        asked = sorted(wanted - busy)
        if not asked:
            return set()
        ups, repos = [a[0] for a in asked], [a[1] for a in asked]
        rows = self._run("fetch", Q.forget_empty, ups, repos)
        return {f"{row[0]}/{row[1]}" for row in rows}

    def forget_upstream(self, upstream: str) -> int:
        """Forget everything kept under ``upstream``: links, tags, tag history, last pulls,
        cached responses and catalog entries; returns how many records (a repository's tag
        history counts as one, as in the diskcache store)."""
        self._memo.clear()
        for pending in [k for k in self._pending_pulls if k[0] == upstream]:
            del self._pending_pulls[pending]
        return int(self._run("fetchval", Q.forget_upstream, upstream))

    # Passed-through responses -----------------------------------------------------------

    def response(self, kind: str, upstream: str, repo: str, key: str) -> CachedResponse | None:
        """The kept answer, or ``None``."""
        row = self._run("fetchrow", Q.response, kind, upstream, repo, key)
        if row is None:
            return None
        flat = list(row[2])
        headers = tuple(zip(flat[0::2], flat[1::2], strict=True))
        return CachedResponse(bytes(row[0]), row[1], headers, row[3])

    def set_response(
        self, kind: str, upstream: str, repo: str, key: str, record: CachedResponse
    ) -> None:
        """Keep an answer, replacing the one kept before."""
        flat = [part for pair in record.headers for part in pair]
        self._run(
            "execute",
            Q.set_response,
            kind,
            upstream,
            repo,
            key,
            record.body,
            record.content_type,
            flat,
            record.fetched_at,
        )

    # Last pull --------------------------------------------------------------------------

    def record_pull(self, upstream: str, repo: str, digest: Digest, when: float) -> None:
        """Note a pull of image ``digest``; persisted at the next ``flush``."""
        self._pending_pulls[(upstream, repo, str(digest))] = when

    def last_pull(self, upstream: str, repo: str, digest: Digest) -> float | None:
        """When image ``digest`` in ``repo`` was last pulled, or ``None``."""
        pending = self._pending_pulls.get((upstream, repo, str(digest)))
        if pending is not None:
            return pending
        value = self._run("fetchval", Q.last_pull, upstream, repo, str(digest))
        return float(value) if value is not None else None

    def pulls(self) -> dict[tuple[str, str, Digest], float]:
        """Last pull of every ``(upstream, repo, digest)``, batched ones included."""
        found = {(r[0], r[1], r[2]): float(r[3]) for r in self._run("fetch", Q.pulls)}
        found.update(self._pending_pulls)
        return {(h, r, Digest.parse(d)): when for (h, r, d), when in found.items()}

    def records(self, kinds: Iterable[str]) -> Iterator[tuple[tuple[str, ...], object]]:
        """Every ``(key, record)`` of the kinds asked (``manifest``, ``tag``, ``pull``), keyed
        as the diskcache store keys them (retention's snapshot; batched last pulls are not
        included: see ``pending_pulls``)."""
        wanted = set(kinds)
        if "manifest" in wanted:
            for digest, manifest in self.manifests():
                yield ("manifest", str(digest)), manifest
        if "tag" in wanted:
            for upstream, repo, name, record in self.tags():
                yield ("tag", upstream, repo, name), record
        if "pull" in wanted:
            for row in self._run("fetch", Q.pulls):
                yield ("pull", row[0], row[1], row[2]), float(row[3])

    def snapshot_rows(self) -> Iterator[SnapshotRows]:
        """Every manifest, tag, last pull and move of a tag away from a digest as plain rows,
        a table at a time (retention's snapshot; batched last pulls are not included)."""
        manifests = self._run("fetch", Q.manifests)
        yield SnapshotRows(manifests=[(r[0], r[1], r[2], r[4], tuple(r[3])) for r in manifests])
        del manifests
        tags = self._run("fetch", Q.tags)
        yield SnapshotRows(tags=[(r[0], r[1], r[2], r[3]) for r in tags])
        del tags
        pulls = self._run("fetch", Q.pulls)
        yield SnapshotRows(pulls=[(r[0], r[1], r[2], float(r[3])) for r in pulls])
        del pulls
        moves = self._run("fetch", Q.untagged)
        yield SnapshotRows(untagged=[(r[0], r[1], r[2], r[3]) for r in moves])

    def summary_database(self) -> Path | None:
        """None: the shared database's tables are read as ``snapshot_rows``."""
        return None

    def pending_pulls(self) -> dict[tuple[str, str, str], float]:
        """Last pulls batched in memory and not flushed yet, by ``(upstream, repo, digest)``."""
        return dict(self._pending_pulls)

    def flush(self) -> int:
        """Write batched last-pull times in one statement (the later of this and another
        replica's time wins); a failed write keeps the batch pending and raises."""
        pending, self._pending_pulls = self._pending_pulls, {}
        try:
            if pending:
                keys = list(pending)
                self._run(
                    "execute",
                    Q.flush_pulls,
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [k[2] for k in keys],
                    [pending[k] for k in keys],
                )
        except BaseException:
            self._pending_pulls = {**pending, **self._pending_pulls}
            raise
        return len(pending)

    def close(self) -> None:
        """Flush batched last pulls (a refused flush is logged with what it loses), stop
        listening and close the pool and the loop thread; closing again does nothing."""
        if self._thread.closed:
            return
        try:
            self.flush()
        except MetadataUnavailable as exc:
            lost = len(self._pending_pulls)
            log.warning("could not keep %d last-pull times at close: %s", lost, exc)
        finally:
            try:
                self._thread.call(self._stop(), self._settings.call_timeout)
            finally:
                self._thread.close()

    async def _stop(self) -> None:
        await self._listener.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.wait_for(pool.close(), self._settings.call_timeout)


def _digest_or_none(text: str) -> Digest | None:
    try:
        return Digest.parse(text)
    except RegistryError:
        return None
