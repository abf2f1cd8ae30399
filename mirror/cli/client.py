"""The one HTTP client of the mirror's admin API (``/admin/v1``), for ``mirror admin`` and
``mirror retention --url``.

One credential convention for both: log in as ``--user TENANCY/USER`` (else ``$MIRROR_USER``,
else ``admin/admin``) with the auth token read from ``--token-file`` (else ``$MIRROR_TOKEN``).
The token is never a flag: flags show up in process lists and shell history.
"""

from __future__ import annotations

import argparse
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "/admin/v1"
USER_ENV = "MIRROR_USER"
TOKEN_ENV = "MIRROR_TOKEN"
DEFAULT_USER = "admin/admin"

CREDENTIALS_HELP = (
    f"Credentials: --user TENANCY/USER (else ${USER_ENV}, else {DEFAULT_USER}) and the auth "
    f"token from --token-file (else ${TOKEN_ENV}); never the token itself as a flag."
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A login (``TENANCY/USER``) and its auth token, sent as HTTP Basic."""

    login: str
    token: str

    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        pair = f"{self.login}:{self.token}".encode()
        return "Basic " + base64.b64encode(pair).decode()


def add_credential_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--user`` and ``--token-file`` (the convention in this module's docstring)."""
    parser.add_argument(
        "--user",
        dest="login",
        metavar="TENANCY/USER",
        help=f"log in as this user (default: ${USER_ENV}, else {DEFAULT_USER})",
    )
    parser.add_argument(
        "--token-file", type=Path, help=f"file holding the auth token (default: ${TOKEN_ENV})"
    )


def credentials_of(
    login: str | None, token_file: Path | None, environ: Mapping[str, str]
) -> Credentials | None:
    """The credentials the flags and environment name, or ``None`` without a token; raises
    ``OSError`` when the token file cannot be read."""
    token = token_file.read_text().strip() if token_file is not None else environ.get(TOKEN_ENV)
    if not token:
        return None
    return Credentials(login or environ.get(USER_ENV) or DEFAULT_USER, token)


@dataclass(frozen=True, slots=True)
class Answer:
    """The server's answer to one admin request: the HTTP status and the raw body."""

    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        """Whether the status is a success (below 400)."""
        return self.status < 400

    def json(self) -> Any:
        """The body as JSON, ``None`` when empty; raises ``ValueError`` if it is not JSON."""
        return json.loads(self.body) if self.body else None


class Unreachable(Exception):
    """The server could not be reached at all (refused, DNS, timeout)."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class AdminClient:
    """Sends JSON requests to the admin API under ``url`` as ``credentials`` (if any)."""

    def __init__(self, url: str, credentials: Credentials | None, *, timeout: float) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        if credentials is not None:
            self._headers["Authorization"] = credentials.authorization()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        """Send ``method`` to ``/admin/v1`` + ``path``; an error status is an ``Answer`` too,
        only a failure to reach the server raises (``Unreachable``)."""
        request = urllib.request.Request(
            self.url + PREFIX + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers=self._headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return Answer(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read())
        except urllib.error.URLError as exc:
            raise Unreachable(self.url + PREFIX + path, exc.reason) from None
