"""Stored class names: records renamed in code read and write the bytes stored before the
rename, so a data directory keeps working across it (and back)."""

from __future__ import annotations

import pickle
import sqlite3
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path

import diskcache

from mirror.db.identity.records import AccessPolicy
from mirror.db.pickled import (
    FieldList,
    StoredName,
    disk_naming,
    dumps,
    field_lists,
    loads,
    loads_fields,
)
from mirror.db.retention import Attachment, PolicyState, RetentionStore
from mirror.retention.policy import RetentionPolicy

STORED = ("mirror.store.retention", "Policy")


@dataclass(frozen=True, slots=True)
class Renamed:
    """Stands for a record class after a rename."""

    name: str
    days: float | None = None


@dataclass(frozen=True, slots=True)
class Before:
    """Stands for the same record class before the rename."""

    name: str
    days: float | None = None


NAMES: dict[type, StoredName] = {Renamed: (__name__, "Before")}


def test_a_renamed_class_pickles_to_the_bytes_of_its_stored_name() -> None:
    value = (Renamed("a", 30.0), [Renamed("b")])

    assert dumps(value, 5, NAMES) == pickle.dumps((Before("a", 30.0), [Before("b")]), protocol=5)


def test_the_stored_name_reads_back_as_the_renamed_class() -> None:
    stored = pickle.dumps([Before("a", 30.0)], protocol=5)

    assert loads(stored, NAMES) == [Renamed("a", 30.0)]


def test_other_values_pickle_as_pickle_does() -> None:
    value = {"x": (1, 2.5, None, True, b"raw", Attachment("a", 1.0))}

    assert dumps(value, 5, NAMES) == pickle.dumps(value, protocol=5)


def test_a_cache_with_the_naming_disk_keeps_large_and_small_records(tmp_path: Path) -> None:
    cache = diskcache.Cache(str(tmp_path), disk=disk_naming(NAMES), disk_min_file_size=64)
    try:
        cache.set("small", Renamed("a"))
        cache.set("large", Renamed("b" * 200))
        cache.set("plain", "text")
        assert cache.get("small") == Renamed("a")
        assert cache.get("large") == Renamed("b" * 200)
        assert cache.get("plain") == "text"
    finally:
        cache.close()
    plain = diskcache.Cache(str(tmp_path))
    try:
        assert plain.get("small") == Before("a")
        assert plain.get("large") == Before("b" * 200)
    finally:
        plain.close()


def test_retention_policies_are_stored_under_their_former_name(tmp_path: Path) -> None:
    store = RetentionStore(tmp_path)
    store.create(RetentionPolicy("a", not_pulled_days=30), 1.0)
    state = store.state()
    store.close()
    with sqlite3.connect(tmp_path / "cache.db") as db:
        (raw,) = db.execute("SELECT value FROM Cache WHERE key = 'policies'").fetchone()

    assert b"\x8c\x16mirror.store.retention\x94" in bytes(raw) and b"mirror.db" not in bytes(raw)
    assert b"\x8c\x06Policy\x94" in bytes(raw)
    assert b"RetentionPolicy" not in bytes(raw)
    names = {RetentionPolicy: STORED, PolicyState: (STORED[0], "PolicyState")}
    assert loads(bytes(raw), names) == state


def test_the_bytes_name_the_former_classes() -> None:
    state = PolicyState((RetentionPolicy("global"),))
    access = AccessPolicy("acme", "readers", ("allow pull",))

    assert b"\x8c\x06Policy" in dumps(state, 5, {RetentionPolicy: STORED})
    assert b"RetentionPolicy" not in dumps(state, 5, {RetentionPolicy: STORED})
    assert b"AccessPolicy" not in dumps(
        access, 5, {AccessPolicy: ("mirror.identity.records", "Policy")}
    )


def test_a_record_is_read_as_its_fields_under_its_stored_and_its_own_name() -> None:
    unpickler = field_lists(NAMES)
    record = Renamed("a", 2.0)
    for data in (dumps(record, 5, NAMES), pickle.dumps(record, protocol=5)):
        fields = loads_fields(data, unpickler)
        assert isinstance(fields, FieldList) and fields.record is Renamed
        assert fields == [getattr(record, f.name) for f in dataclass_fields(Renamed)]
    # Records of other classes, inside other values too, are read whole.
    other = (RetentionPolicy("x"), Renamed("c"))
    read = loads_fields(pickle.dumps(other, protocol=5), unpickler)
    assert read[0] == RetentionPolicy("x") and read[1] == ["c", None]
