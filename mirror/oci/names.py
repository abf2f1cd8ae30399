"""Repository names and tags (distribution-spec "Pulling manifests", name and tag grammar)."""

from __future__ import annotations

import re

from mirror.errors import ErrorCode, RegistryError

# <name> is path components of [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* separated by "/".
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_PATTERN = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
# A registry host as containerd sends it in ?ns= (host, optional port).
HOST_PATTERN = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]{1,5})?$")
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise ``NAME_INVALID``."""
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
        raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": name})
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag, else raise ``TAG_INVALID``."""
    if not TAG_PATTERN.fullmatch(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, "invalid tag", detail={"tag": tag})
    return tag


def is_host(text: str) -> bool:
    """Whether ``text`` is shaped like a registry host (``host[:port]``)."""
    return bool(HOST_PATTERN.fullmatch(text)) and (
        "." in text or ":" in text or text == "localhost"
    )
