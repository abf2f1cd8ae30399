"""The on-disk format across moves of code: a data directory written before the restructure
(``tests/data/datadir-v0``, written by ``generate.py`` there with commit 71f90d6) opens with
today's code, and today's code writes the records under the same stored names."""

from __future__ import annotations

import pickletools
import shutil
import sqlite3
from pathlib import Path

import pytest

from mirror.db.identity.records import PullThroughRule
from mirror.db.identity.store import IdentityStore
from mirror.db.metadata import Metadata, TagRecord
from mirror.db.retention import RetentionStore
from mirror.oci.digest import Digest

V0 = Path(__file__).resolve().parents[2] / "data" / "datadir-v0"
A = Digest.parse("sha256:" + "a" * 64)
B = Digest.parse("sha256:" + "b" * 64)
OCI = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(V0, copy, ignore=shutil.ignore_patterns("*.py"))
    return copy


def stored_modules(database: Path) -> set[str]:
    """Every ``mirror.*`` module a pickled value in a diskcache database names."""
    found: set[str] = set()
    with sqlite3.connect(database) as db:
        for (value,) in db.execute("SELECT value FROM Cache WHERE mode = 4 AND value IS NOT NULL"):
            strings = [arg for _op, arg, _pos in pickletools.genops(bytes(value)) if arg]
            found |= {s for s in strings if isinstance(s, str) and s.startswith("mirror.")}
    return found


def test_metadata_written_before_the_restructure_reads_back(data_dir: Path) -> None:
    metadata = Metadata(data_dir / "metadata")
    try:
        tag = metadata.tag("docker.io", "library/alpine", "3")
        assert tag is not None and tag.digest == str(B) and tag.size == 600
        record = metadata.manifest(A)
        assert record is not None and record.references == (str(B),)
        assert metadata.linked("docker.io", "library/alpine", A)
        assert [
            (m.from_digest, m.to_digest)
            for m in metadata.tag_history("docker.io", "library/alpine")
        ][-1] == (str(A), str(B))
        response = metadata.response("tags", "docker.io", "library/alpine", "")
        assert response is not None and response.body == b'{"tags":["3"]}'
        assert metadata.last_pull("docker.io", "library/alpine", A) == 2000.0
    finally:
        metadata.close()


def test_retention_policies_written_before_the_restructure_read_back(data_dir: Path) -> None:
    store = RetentionStore(data_dir / "retention")
    try:
        policy = store.state().policy("stale")
        assert policy.not_pulled_days == 30.0 and policy.exempt_tags == ("release-*",)
        assert store.state().repositories("stale") == ("docker.io/library/alpine",)
    finally:
        store.close()


def test_identity_written_before_the_restructure_reads_back(data_dir: Path) -> None:
    identity = IdentityStore(data_dir / "identity")
    try:
        assert [t.name for t in identity.tenancies()] == ["acme"]
        assert identity.groups_of("acme", "dev") == frozenset({"devs"})
        assert [t.description for t in identity.tokens("acme", "dev")] == ["laptop"]
        assert [p.name for p in identity.policies("acme")] == ["pull"]
        repository = identity.repository("acme", "team/app")
        assert repository is not None and repository.public
        rule = identity.rule("acme", "hub")
        assert rule == PullThroughRule(
            "acme", "hub", "https://registry-1.docker.io", "u", "p", 1000.0
        )
    finally:
        identity.close()


def test_records_written_today_carry_the_names_stored_before(data_dir: Path) -> None:
    metadata = Metadata(data_dir / "metadata")
    metadata.set_tag("docker.io", "library/alpine", "4", TagRecord(str(A), OCI, 512, 3000.0))
    metadata.close()
    retention = RetentionStore(data_dir / "retention")
    retention.detach("stale", "docker.io/library/alpine", 3000.0)
    retention.close()
    identity = IdentityStore(data_dir / "identity")
    identity.set_policy("acme", "pull", ("allow group devs to manage repos in tenancy",))
    identity.create_tenancy("beta", 3000.0)
    identity.close()

    for name in ("metadata", "retention", "identity"):
        before = stored_modules(V0 / name / "cache.db")
        assert before and stored_modules(data_dir / name / "cache.db") == before, name
