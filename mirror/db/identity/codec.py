"""Identity records as JSON, for the shared PostgreSQL store: a record is its class name and
fields; bytes, tuples and secret hashes are tagged so they read back as they were. Only the
record classes below are ever built (no pickles cross the network)."""

from __future__ import annotations

import base64
from dataclasses import fields, is_dataclass
from typing import Any

from mirror.crypto.secrets import SecretHash
from mirror.db.identity.records import (
    AccessPolicy,
    AuthToken,
    Group,
    PullThroughRule,
    Repository,
    Tenancy,
    User,
)

RECORDS: dict[str, type] = {
    cls.__name__: cls
    for cls in (Tenancy, User, Group, AuthToken, AccessPolicy, Repository, PullThroughRule)
}


class CodecError(ValueError):
    """A stored body that is not a record this version knows."""


def encode(value: object) -> Any:
    """``value`` (a record, or a plain JSON value) as JSON-ready data."""
    if isinstance(value, SecretHash):
        return {"$hash": [_b64(value.salt), _b64(value.digest), value.cost]}
    if is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if RECORDS.get(name) is not type(value):
            raise CodecError(f"not an identity record: {name}")
        body = {f.name: encode(getattr(value, f.name)) for f in fields(value)}
        return {"$record": name, "fields": body}
    if isinstance(value, bytes):
        return {"$bytes": _b64(value)}
    if isinstance(value, tuple):
        return {"$tuple": [encode(item) for item in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CodecError(f"cannot store {type(value).__name__}")


def decode(data: Any) -> object:
    """The value ``encode`` made ``data`` from (``CodecError`` for anything else)."""
    if isinstance(data, dict):
        return _decode_tagged(data)
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    raise CodecError(f"unexpected {type(data).__name__}")


def _decode_tagged(data: dict[str, Any]) -> object:
    if "$hash" in data:
        salt, digest, cost = data["$hash"]
        return SecretHash(base64.b64decode(salt), base64.b64decode(digest), int(cost))
    if "$bytes" in data:
        return base64.b64decode(data["$bytes"])
    if "$tuple" in data:
        return tuple(decode(item) for item in data["$tuple"])
    cls = RECORDS.get(data.get("$record", ""))
    if cls is None or not isinstance(data.get("fields"), dict):
        raise CodecError("unknown record")
    try:
        return cls(**{name: decode(value) for name, value in data["fields"].items()})
    except TypeError as exc:
        raise CodecError(f"{cls.__name__}: {exc}") from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
