"""Per-call cost of the metadata store's hot reads, both backends: ``python -m
benchmarks.metadata_calls [--dsn DSN]`` (without a DSN a PostgreSQL is started as the tests do).

Prints microseconds per call: a memoised tag lookup, a tag lookup that asks the database
(the bridge round trip: caller thread -> asyncpg loop thread -> PostgreSQL -> back), and
set_tag / touch_tag (writes always go to the database)."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mirror.db.metadata import Metadata, TagRecord
from mirror.db.postgres.bridge import LoopThread
from mirror.db.postgres.connect import PostgresSettings
from mirror.db.postgres.metadata import PostgresMetadata
from mirror.db.roles import MetadataStore

RECORD = TagRecord("sha256:" + "a" * 64, "application/vnd.oci.image.manifest.v1+json", 10, 1.0)


def per_call(call: Callable[[int], object], n: int) -> float:
    """Microseconds per call of ``call(i)`` over ``n`` calls."""
    start = time.perf_counter()
    for i in range(n):
        call(i)
    return (time.perf_counter() - start) / n * 1e6


def measure(name: str, store: MetadataStore, n: int) -> None:
    """Print the figures of one store."""
    store.set_tag("h", "r", "hot", RECORD)
    for i in range(n):
        store.set_tag("h", "r", f"t{i}", RECORD)
    memo = per_call(lambda _i: store.tag("h", "r", "hot"), n)
    cold = per_call(lambda i: store.tag("h", "r", f"missing{i}"), n)  # never memoised
    write = per_call(lambda i: store.set_tag("h", "w", f"t{i}", RECORD), n)
    touch = per_call(lambda i: store.touch_tag("h", "r", f"t{i}", float(i)), n)
    print(
        f"{name:10} tag (memo) {memo:7.1f} us   tag (database) {cold:7.1f} us   "
        f"set_tag {write:7.1f} us   touch_tag {touch:7.1f} us"
    )


async def _nothing() -> None:
    return None


def bridge_only(n: int) -> None:
    """Print the cost of the thread hop alone (a coroutine that does nothing)."""
    thread = LoopThread()
    try:
        hop = per_call(lambda _i: thread.call(_nothing()), n)
    finally:
        thread.close()
    print(f"bridge     thread hop {hop:7.1f} us (no database)")


def main() -> None:
    """Run both backends."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    bridge_only(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        disk = Metadata(Path(tmp) / "metadata")
        measure("diskcache", disk, args.n)
        disk.close()
        if args.dsn:
            run_postgres(args.dsn, Path(tmp), args.n)
            return
        from tests.peers.postgres import PostgresServer, postgres_bin

        bindir = postgres_bin()
        assert bindir is not None, "apt-get install postgresql"
        with PostgresServer(Path(tempfile.mkdtemp(prefix="mirror-pg-bench-")), bindir) as pg:
            run_postgres(pg.dsn(pg.new_database()), Path(tmp), args.n)


def run_postgres(dsn: str, directory: Path, n: int) -> None:
    """Measure the PostgreSQL store on ``dsn``."""
    store = PostgresMetadata.open(PostgresSettings(dsn), directory)
    try:
        measure("postgres", store, n)
    finally:
        store.close()


if __name__ == "__main__":
    main()
