"""Where a benchmark's credentials come from: ``--user USER:PASSWORD`` or a docker config
file's ``auths`` entry for the registry's host (``auth`` as base64 ``user:password``, or
``username`` and ``password``). Credential helpers (``credsStore``) are not run."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

Credentials = tuple[str, str]


class CredentialsError(ValueError):
    """A ``--user`` value or a docker config file that cannot be read (says which)."""


def parse_user(value: str) -> Credentials:
    """``USER:PASSWORD`` as a pair; raises :class:`CredentialsError` without a colon."""
    user, colon, password = value.partition(":")
    if not colon or not user:
        raise CredentialsError("--user must be USER:PASSWORD")
    return user, password


def _host_keys(host: str) -> list[str]:
    """The ways a docker config may spell ``host`` (bare, with scheme, Docker Hub's key)."""
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        keys.append("https://index.docker.io/v1/")
    return keys


def from_docker_config(path: Path, host: str) -> Credentials | None:
    """The credentials ``path`` holds for ``host``, or ``None`` when it has none."""
    try:
        document: Any = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CredentialsError(f"docker config {path}: {error}") from error
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in _host_keys(host):
        entry = auths.get(key)
        if isinstance(entry, dict):
            return _entry_credentials(path, key, entry)
    return None


def _entry_credentials(path: Path, key: str, entry: dict[str, Any]) -> Credentials | None:
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            decoded = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise CredentialsError(f"docker config {path}: auths[{key!r}].auth: {error}") from None
        return parse_user(decoded)
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str):
        return username, password
    return None
