"""The identity records, frozen values stored in the identity database, and name rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from mirror.crypto.secrets import SecretHash
from mirror.errors import ErrorCode, RegistryError
from mirror.oci.names import is_host, validate_name

ADMINISTRATORS = "administrators"
# Tenancy namespaces are one repository-name component without dots, so they never look like
# a registry host (``docker.io``) in a path.
_TENANCY = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# First components that mean something on the node-local face whatever tenancies exist
# (Docker Hub's official images): never a tenancy's name.
RESERVED_TENANCIES = frozenset({"library"})
_USER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TOKEN_PREFIX = "mrt_"
MAX_ACTIVE_TOKENS = 2


def _check(pattern: re.Pattern[str], kind: str, value: object, limit: int = 64) -> str:
    if not isinstance(value, str) or len(value) > limit or not pattern.fullmatch(value):
        raise RegistryError(ErrorCode.REQUEST_INVALID, f"invalid {kind} name", detail={kind: value})
    return value


def tenancy_name(value: object) -> str:
    """A valid tenancy namespace, or ``REQUEST_INVALID`` (reserved names included)."""
    name = _check(_TENANCY, "tenancy", value, 63)
    if name in RESERVED_TENANCIES:
        raise RegistryError(
            ErrorCode.REQUEST_INVALID, "reserved name, not a tenancy", detail={"tenancy": name}
        )
    return name


def is_tenancy_name(value: str) -> bool:
    """Whether ``value`` is shaped like a tenancy name (no lookup needed otherwise)."""
    return len(value) <= 63 and _TENANCY.fullmatch(value) is not None


def user_name(value: object) -> str:
    """A valid user name, or ``REQUEST_INVALID``."""
    return _check(_USER, "user", value)


def group_name(value: object) -> str:
    """A valid group or policy name, or ``REQUEST_INVALID``."""
    return _check(_GROUP, "group", value)


def repository_name(value: object) -> str:
    """A repository name inside a tenancy: a distribution name, optionally after a registry
    host (the default tenancy's proxy repositories: ``127.0.0.1:5000/test/app``)."""
    if not isinstance(value, str):
        raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": value})
    first, sep, rest = value.partition("/")
    if sep and is_host(first):
        validate_name(rest)
    else:
        validate_name(value)
    return value


@dataclass(frozen=True, slots=True)
class Tenancy:
    """A namespace of users, groups, policies and repositories (``acme``)."""

    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class User:
    """A user; logs in as ``<tenancy>/<name>`` with one of its auth tokens."""

    tenancy: str
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Group:
    """A named set of users of one tenancy."""

    tenancy: str
    name: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthToken:
    """A user's auth token: only its hash is kept; the secret was shown once."""

    id: str
    tenancy: str
    user: str
    hash: SecretHash = field(repr=False)
    description: str
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None

    @property
    def active(self) -> bool:
        """Whether the token is not revoked."""
        return self.revoked_at is None

    def public(self) -> dict[str, object]:
        """What may be shown about the token (never its hash)."""
        return {
            "id": self.id,
            "user": f"{self.tenancy}/{self.user}",
            "description": self.description,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
            "active": self.active,
        }


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """A named list of access statements of one tenancy, stored as text (parsed when saved);
    pickled under its former name ``Policy`` (see ``mirror.db.identity.base``)."""

    tenancy: str
    name: str
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository's settings; private unless ``public``."""

    tenancy: str
    name: str
    public: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class PullThroughRule:
    """Repositories under ``<tenancy>/<prefix>/`` are pulled through from ``url``, with the
    tenancy's own upstream credentials when set. ``id`` is given when the rule is created, so
    a rule deleted and created again (another URL, other credentials) is another upstream."""

    tenancy: str
    prefix: str
    url: str
    username: str | None = None
    # Plain text only when no keyring seals it (encryption off) or in a record stored before
    # sealing (sealed at the next start); else None and the password is in sealed_password.
    password: str | None = field(default=None, repr=False)
    created_at: float = 0.0
    id: str = ""
    # The password sealed with the keyring (mirror.crypto.sealed), bound to the rule's key.
    sealed_password: str | None = field(default=None, repr=False)

    @property
    def has_password(self) -> bool:
        """Whether the rule carries upstream credentials (plain or sealed)."""
        return self.password is not None or self.sealed_password is not None

    @property
    def key(self) -> str:
        """The upstream key of this rule (``acme/hub@<id>``): cache entries, links and tags
        are kept per key, so no other rule (of this tenancy or another) ever sees them. Rules
        stored before ids existed keep their key ``acme/hub``."""
        base = f"{self.tenancy}/{self.prefix}"
        return f"{base}@{self.id}" if self.id else base

    def __setstate__(self, state: list[object]) -> None:
        """Unpickle, also a rule stored before ``id`` or ``sealed_password`` existed (the
        missing fields then take their defaults)."""
        for spec, value in zip(fields(self), state, strict=False):
            object.__setattr__(self, spec.name, value)
        for spec in fields(self)[len(state) :]:
            object.__setattr__(self, spec.name, spec.default)

    def public(self) -> dict[str, object]:
        """What may be shown about the rule (never the password)."""
        return {
            "prefix": self.prefix,
            "url": self.url,
            "username": self.username,
            "has_password": self.has_password,
            "created_at": self.created_at,
        }


def format_token(token_id: str, secret: str) -> str:
    """The string handed to the user once: ``mrt_<id>_<secret>``."""
    return f"{TOKEN_PREFIX}{token_id}_{secret}"


def split_token(text: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a token string, or ``None`` when it is not shaped like one."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    rest = text[len(TOKEN_PREFIX) :]
    token_id, sep, secret = rest.partition("_")
    if not sep or len(token_id) != 12 or not secret:
        return None
    return token_id, secret
