"""Stored class names: a record class renamed or moved in code keeps the module and name its
pickles carry on disk, so a data directory reads and writes the same bytes across the rename.

diskcache pickles every record; a pickle names the record's class by module and name. A store
whose records were renamed opens its database with a ``Disk`` from ``disk_naming`` that writes
the stored name for the new class and reads the stored name back as the new class.
"""

from __future__ import annotations

import io
import pickle
import sqlite3
from collections.abc import Mapping
from typing import Any

import diskcache
from diskcache.core import MODE_PICKLE, UNKNOWN

StoredName = tuple[str, str]


# The reference (pure Python) pickler, whose ``save_global`` can be overridden; typeshed
# types it as the C pickler, which has none.
_ReferencePickler: Any = pickle._Pickler


class _Pickler(_ReferencePickler):  # type: ignore[misc]  # typeshed has no pure pickler
    """The reference pickler (its output equals the C pickler's), naming renamed classes by
    their stored names."""

    def __init__(self, file: io.BytesIO, protocol: int, names: Mapping[type, StoredName]) -> None:
        super().__init__(file, protocol)
        self._names = names

    def save_global(self, obj: Any, name: str | None = None) -> None:
        stored = self._names.get(obj) if isinstance(obj, type) else None
        if stored is None:
            super().save_global(obj, name)
            return
        module, qualname = stored
        self.save(module)
        self.save(qualname)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


class _Unpickler(pickle.Unpickler):
    """Reads stored names as the classes they now are."""

    def __init__(self, file: io.BytesIO, classes: Mapping[StoredName, type]) -> None:
        super().__init__(file)
        self._classes = classes

    def find_class(self, module: str, name: str) -> Any:
        return self._classes.get((module, name)) or super().find_class(module, name)


def dumps(value: object, protocol: int, names: Mapping[type, StoredName]) -> bytes:
    """``value`` pickled, renamed classes under their stored names."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol, names).dump(value)
    return buffer.getvalue()


def loads(data: bytes, names: Mapping[type, StoredName]) -> Any:
    """The value pickled in ``data``; stored names come back as their renamed classes."""
    return _Unpickler(io.BytesIO(data), classes(names)).load()


def classes(names: Mapping[type, StoredName]) -> dict[StoredName, type]:
    """The classes by their stored names (what ``loads_classes`` reads with)."""
    return {stored: cls for cls, stored in names.items()}


def loads_classes(data: bytes, found: Mapping[StoredName, type]) -> Any:
    """``loads`` with the stored names already inverted (``classes``), for reading many."""
    return _Unpickler(io.BytesIO(data), found).load()


class NamingDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache has no type hints
    """A diskcache ``Disk`` that pickles the classes in ``NAMES`` under their stored names."""

    NAMES: Mapping[type, StoredName] = {}

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[Any, ...]:
        """diskcache's ``Disk.store``: pickles other values with the stored class names."""
        if read or type(value) in (str, bytes, int, float):
            return tuple(super().store(value, read, key=key))
        data = dumps(value, self.pickle_protocol, self.NAMES)
        if len(data) < self.min_file_size:
            return 0, MODE_PICKLE, None, sqlite3.Binary(data)
        filename, full_path = self.filename(key, value)
        self._write(full_path, io.BytesIO(data), "xb")
        return len(data), MODE_PICKLE, filename, None

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        """diskcache's ``Disk.fetch``: unpickles stored class names as today's classes."""
        if mode != MODE_PICKLE:
            return super().fetch(mode, filename, value, read)
        if value is None:
            assert filename is not None
            with open(f"{self._directory}/{filename}", "rb") as reader:
                return loads(reader.read(), self.NAMES)
        return loads(bytes(value), self.NAMES)


def disk_naming(names: Mapping[type, StoredName]) -> type[NamingDisk]:
    """A ``Disk`` class for ``diskcache.Cache(disk=...)`` keeping ``names`` (class -> stored
    ``(module, name)``)."""
    return type("NamingDisk", (NamingDisk,), {"NAMES": dict(names)})


def stored_in(
    module: str, *classes: type, renamed: Mapping[type, str] | None = None
) -> dict[type, StoredName]:
    """``classes`` stored under ``module`` by their own names (or the name ``renamed`` gives)."""
    names = dict(renamed or {})
    return {cls: (module, names.get(cls, cls.__name__)) for cls in (*classes, *names)}


class FieldList(list[Any]):
    """A stored record read as the list of its fields' values (the state a slotted dataclass
    pickles), without building the record: ``record`` names the class it stands for."""

    record: type = object

    def __setstate__(self, state: Any) -> None:
        # What the dataclass's own ``__setstate__`` assigns its fields from, in order.
        self.extend(state)


def field_lists(names: Mapping[type, StoredName]) -> type[pickle.Unpickler]:
    """An unpickler that reads the records of ``names`` as ``FieldList``s (a subclass per
    record class), for reading many records' fields at C speed: ``loads_fields``."""
    found: dict[StoredName, type] = {}
    for cls, stored in names.items():
        fields = type(f"{cls.__name__}Fields", (FieldList,), {"record": cls})
        # Under its stored name, and under its own (what a plain pickle of it says).
        found[stored] = found[(cls.__module__, cls.__qualname__)] = fields

    def find_class(self: pickle.Unpickler, module: str, name: str) -> Any:
        return found.get((module, name)) or pickle.Unpickler.find_class(self, module, name)

    return type("FieldsUnpickler", (pickle.Unpickler,), {"find_class": find_class})


def loads_fields(data: bytes, unpickler: type[pickle.Unpickler]) -> Any:
    """The value pickled in ``data``, records as ``FieldList``s (``unpickler`` from
    ``field_lists``)."""
    return unpickler(io.BytesIO(data)).load()
