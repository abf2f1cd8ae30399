"""Hosted quotas of a tier in PostgreSQL (migration 0006): limits, admitted repositories,
verified object sizes and the reservations of pushes in flight, shared by every replica.

Usage is derived in SQL from the shared links, so it is the same at every replica the moment
any replica links or unlinks. An admission (``mirror_quota_admit``) locks the tenancy's row,
checks the limit and inserts the reservation in one statement: two replicas admitting into
one tenancy at once are serialised by PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirror.db.postgres.shared import SharedDatabase

_ADMIT = "SELECT * FROM mirror_quota_admit($1, $2, $3, $4, $5, $6, $7, $8, $9)"
_COMMIT = "SELECT mirror_quota_commit($1)"
_RELEASE = "DELETE FROM quota_reservations WHERE id = $1"
_USAGE = (
    "SELECT t, mirror_quota_stored(t), (SELECT count(*) FROM mirror_quota_repositories(t)),"
    " l.tenancy IS NOT NULL, l.bytes, l.repositories"
    " FROM unnest($1::text[]) t LEFT JOIN quota_limits l ON l.tenancy = t"
)
_TENANCIES = (
    "SELECT substr(upstream, 8) FROM links WHERE upstream LIKE 'hosted:%'"
    " UNION SELECT tenancy FROM quota_repositories UNION SELECT tenancy FROM quota_limits"
)
_SET_LIMITS = (
    "INSERT INTO quota_limits VALUES ($1, $2, $3) ON CONFLICT (tenancy)"
    " DO UPDATE SET bytes = EXCLUDED.bytes, repositories = EXCLUDED.repositories"
)
_DROP_LIMITS = "DELETE FROM quota_limits WHERE tenancy = $1"
_UNSIZED = (
    "SELECT DISTINCT l.digest FROM links l LEFT JOIN quota_sizes s USING (digest)"
    " WHERE l.upstream LIKE 'hosted:%' AND s.digest IS NULL"
)
_SIZED = (
    "INSERT INTO quota_sizes SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING"
)
_ADD_REPOSITORIES = (
    "INSERT INTO quota_repositories SELECT * FROM unnest($1::text[], $2::text[])"
    " ON CONFLICT DO NOTHING"
)
_FORGET_REPOSITORY = "DELETE FROM quota_repositories WHERE tenancy = $1 AND repo = $2"
_FORGET_TENANCY = (
    "DELETE FROM quota_repositories WHERE tenancy = $1;"
    " DELETE FROM quota_reservations WHERE tenancy = $1;"
    " DELETE FROM quota_limits WHERE tenancy = $1;"
    " DELETE FROM quota_tenancies WHERE tenancy = $1"
)

# Limits as stored: (bytes, repositories), ``None`` unlimited.
StoredLimits = tuple[int | None, int | None]


@dataclass(frozen=True, slots=True)
class Admission:
    """An admission's answer: the reservation's id (``None``: nothing held), or the refusal
    (the quota passed, its use, what was asked and the limit)."""

    reservation: int | None
    quota: str | None
    used: int
    adding: int
    limit: int | None


@dataclass(frozen=True, slots=True)
class StoredUsage:
    """A tenancy's stored bytes and repositories, and its own limits (``None``: none set)."""

    tenancy: str
    bytes: int
    repositories: int
    limits: StoredLimits | None


class PostgresQuotaRecords:
    """The tier's quota tables; every call is one round trip on ``database``'s pool."""

    def __init__(self, database: SharedDatabase) -> None:
        self._db = database

    @property
    def holder(self) -> str:
        """Who this replica's reservations belong to (its pool's application_name)."""
        return self._db.origin

    def admit(
        self,
        tenancy: str,
        repo: str,
        object_: tuple[str, int] | None,
        default: StoredLimits,
        now: float,
        timeout: float,
    ) -> Admission:
        """Admit ``repo`` and, with ``object_`` (digest, size), reserve its bytes for
        ``timeout`` seconds; refused, nothing is held or admitted."""
        digest, size = object_ if object_ is not None else (None, 0)
        args = (tenancy, repo, digest, size, *default, now, timeout, self.holder)
        row = self._db.run("fetchrow", _ADMIT, *args)
        return Admission(row[0], row[1], int(row[2]), int(row[3]), row[4])

    def commit(self, reservation: int) -> None:
        """The reserved object is stored and linked: record its size, free the reservation."""
        self._db.run("execute", _COMMIT, reservation)

    def release(self, reservation: int) -> None:
        """Give a reservation's bytes back."""
        self._db.run("execute", _RELEASE, reservation)

    def usage(self, tenancies: list[str]) -> list[StoredUsage]:
        """The usage of each of ``tenancies``, in that order."""
        rows = self._db.run("fetch", _USAGE, tenancies)
        return [
            StoredUsage(row[0], int(row[1]), int(row[2]), (row[4], row[5]) if row[3] else None)
            for row in rows
        ]

    def tenancies(self) -> list[str]:
        """Tenancies that store something, admitted a repository or have limits of their own."""
        return sorted(row[0] for row in self._db.run("fetch", _TENANCIES))

    def set_limits(self, tenancy: str, limits: StoredLimits | None) -> None:
        """Set (``None``: remove) ``tenancy``'s own limits."""
        if limits is None:
            self._db.run("execute", _DROP_LIMITS, tenancy)
        else:
            self._db.run("execute", _SET_LIMITS, tenancy, *limits)

    def unsized(self) -> list[str]:
        """Digests hosted repositories link whose size is not recorded yet."""
        return [row[0] for row in self._db.run("fetch", _UNSIZED)]

    def record_sizes(self, sizes: dict[str, int]) -> None:
        """Record verified sizes (a size already recorded stays)."""
        if sizes:
            self._db.run("execute", _SIZED, list(sizes), list(sizes.values()))

    def add_repositories(self, pairs: list[tuple[str, str]]) -> None:
        """Count (tenancy, repo) pairs as repositories (records without content yet)."""
        if pairs:
            self._db.run("execute", _ADD_REPOSITORIES, [t for t, _ in pairs], [r for _, r in pairs])

    def forget_repository(self, tenancy: str, repo: str) -> None:
        """A deleted repository leaves the count (its links went with it)."""
        self._db.run("execute", _FORGET_REPOSITORY, tenancy, repo)

    def forget_tenancy(self, tenancy: str) -> None:
        """A deleted tenancy: its repositories, reservations and limits go."""
        self._db.call(self._forget_tenancy(tenancy))

    async def _forget_tenancy(self, tenancy: str) -> None:
        async with self._db.pool.acquire() as connection, connection.transaction():
            for statement in _FORGET_TENANCY.split(";"):
                await connection.execute(statement, tenancy)

    def close(self) -> None:
        """Close the connection pool."""
        self._db.close()
