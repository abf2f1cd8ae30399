"""``mirror admin ...``: the admin API from the command line.

Logs in by the convention of :mod:`mirror.cli.client`: ``--user <tenancy>/<user>`` (or
``$MIRROR_USER``) and the auth token from ``--token-file`` or ``$MIRROR_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from mirror.cli.client import (
    CREDENTIALS_HELP,
    PREFIX,
    TOKEN_ENV,
    AdminClient,
    Unreachable,
    add_credential_flags,
    credentials_of,
)

TIMEOUT = 30.0

# (resource, action) -> (method, path under /admin/v1, positional arguments)
COMMANDS: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] = {
    ("tenancy", "list"): ("GET", "/tenancies", ()),
    ("tenancy", "create"): ("POST", "/tenancies", ("name",)),
    ("tenancy", "delete"): ("DELETE", "/tenancies/{name}", ("name",)),
    ("user", "list"): ("GET", "/tenancies/{tenancy}/users", ("tenancy",)),
    ("user", "create"): ("POST", "/tenancies/{tenancy}/users", ("tenancy", "name")),
    ("user", "delete"): ("DELETE", "/tenancies/{tenancy}/users/{name}", ("tenancy", "name")),
    ("group", "list"): ("GET", "/tenancies/{tenancy}/groups", ("tenancy",)),
    ("group", "create"): ("POST", "/tenancies/{tenancy}/groups", ("tenancy", "name")),
    ("group", "delete"): ("DELETE", "/tenancies/{tenancy}/groups/{name}", ("tenancy", "name")),
    ("group", "add"): (
        "PUT",
        "/tenancies/{tenancy}/groups/{name}/members/{user}",
        ("tenancy", "name", "user"),
    ),
    ("group", "remove"): (
        "DELETE",
        "/tenancies/{tenancy}/groups/{name}/members/{user}",
        ("tenancy", "name", "user"),
    ),
    ("token", "list"): ("GET", "/tenancies/{tenancy}/users/{user}/tokens", ("tenancy", "user")),
    ("token", "create"): (
        "POST",
        "/tenancies/{tenancy}/users/{user}/tokens",
        ("tenancy", "user"),
    ),
    ("token", "revoke"): (
        "DELETE",
        "/tenancies/{tenancy}/users/{user}/tokens/{id}",
        ("tenancy", "user", "id"),
    ),
    ("policy", "list"): ("GET", "/tenancies/{tenancy}/policies", ("tenancy",)),
    ("policy", "set"): ("PUT", "/tenancies/{tenancy}/policies/{name}", ("tenancy", "name")),
    ("policy", "delete"): ("DELETE", "/tenancies/{tenancy}/policies/{name}", ("tenancy", "name")),
    ("repo", "list"): ("GET", "/tenancies/{tenancy}/repositories", ("tenancy",)),
    ("repo", "create"): ("POST", "/tenancies/{tenancy}/repositories", ("tenancy", "name")),
    ("repo", "public"): ("PATCH", "/tenancies/{tenancy}/repositories/{name}", ("tenancy", "name")),
    ("repo", "private"): (
        "PATCH",
        "/tenancies/{tenancy}/repositories/{name}",
        ("tenancy", "name"),
    ),
    ("repo", "delete"): (
        "DELETE",
        "/tenancies/{tenancy}/repositories/{name}",
        ("tenancy", "name"),
    ),
    ("usage", "list"): ("GET", "/usage", ()),
    ("usage", "show"): ("GET", "/tenancies/{tenancy}/usage", ("tenancy",)),
    ("quota", "set"): ("PUT", "/tenancies/{tenancy}/quota", ("tenancy",)),
    ("quota", "reset"): ("DELETE", "/tenancies/{tenancy}/quota", ("tenancy",)),
    ("rule", "list"): ("GET", "/tenancies/{tenancy}/rules", ("tenancy",)),
    ("rule", "create"): ("POST", "/tenancies/{tenancy}/rules", ("tenancy", "prefix", "url")),
    ("rule", "delete"): ("DELETE", "/tenancies/{tenancy}/rules/{prefix}", ("tenancy", "prefix")),
}


RESOURCES = {
    "tenancy": "tenancies (isolated sets of users, repositories and rules)",
    "user": "users of a tenancy",
    "group": "groups of users, named in policies",
    "token": "auth tokens of a user (the password of docker login)",
    "policy": "access policies of a tenancy",
    "repo": "repositories of a tenancy and their visibility",
    "usage": "what hosted repositories store per tenancy, against its quotas",
    "quota": "a tenancy's own quotas (operators): stored bytes, repository count",
    "rule": "pull-through rules: a repository prefix and the upstream it pulls from",
}
ARGUMENTS = {
    "name": "its name",
    "tenancy": "the tenancy",
    "user": "the user's name",
    "id": "the token id (from token list)",
    "prefix": "repository prefix the rule serves",
    "url": "upstream registry URL, e.g. https://registry-1.docker.io/library",
}


_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def size(text: str) -> int:
    """A byte count: ``1048576``, ``500MB``, ``10GiB``, ``2T`` (``argparse`` type)."""
    match = re.fullmatch(r"\s*([0-9]+)\s*([kmgt]?)(i?)b?\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1048576, 500MB, 10GiB)")
    number, unit, binary = match.groups()
    scale = 1024 ** "kmgt".index(unit) * 1024 if binary and unit else _UNITS[unit]
    return int(number) * scale


def add(commands: Any) -> None:
    """Add ``admin`` and its subcommands to the top-level parser's subcommands."""
    admin = commands.add_parser(
        "admin",
        help="administer tenancies, users, policies, ...",
        description=f"The mirror's admin API. {CREDENTIALS_HELP}",
    )
    admin.add_argument(
        "--url",
        dest="mirror_url",
        default=os.environ.get("MIRROR_URL", "http://127.0.0.1:5016"),
        help="the mirror (default: $MIRROR_URL, else http://127.0.0.1:5016)",
    )
    add_credential_flags(admin)
    resources = admin.add_subparsers(dest="resource", required=True)
    by_resource: dict[str, Any] = {}
    for (resource, action), (_, _, positional) in COMMANDS.items():
        if resource not in by_resource:
            by_resource[resource] = resources.add_parser(
                resource, help=RESOURCES[resource]
            ).add_subparsers(dest="action", required=True)
        method, template, _ = COMMANDS[(resource, action)]
        sub = by_resource[resource].add_parser(
            action, help=f"{action} ({method} {PREFIX}{template})"
        )
        for name in positional:
            sub.add_argument(name, help=ARGUMENTS[name])
        if (resource, action) == ("user", "create"):
            sub.add_argument(
                "--group",
                action="append",
                default=[],
                dest="groups",
                help="put the user in this group (repeatable)",
            )
        if (resource, action) == ("token", "create"):
            sub.add_argument("--description", default="", help="what the token is for")
        if (resource, action) == ("policy", "set"):
            sub.add_argument("statements", nargs="+", help="one argument per statement")
        if (resource, action) == ("repo", "create"):
            sub.add_argument(
                "--public", action="store_true", help="anyone may pull it without credentials"
            )
        if (resource, action) == ("quota", "set"):
            sub.add_argument(
                "--bytes", type=size, help="stored bytes (e.g. 500GiB); unlimited when omitted"
            )
            sub.add_argument(
                "--repositories", type=int, help="hosted repositories; unlimited when omitted"
            )
        if (resource, action) == ("rule", "create"):
            sub.add_argument("--username", help="user name at the upstream")
            sub.add_argument("--password-env", help="environment variable holding the password")


# What the commands that send a body put in it.
BODIES: dict[tuple[str, str], Callable[[argparse.Namespace], dict[str, Any]]] = {
    ("tenancy", "create"): lambda a: {"name": a.name},
    ("user", "create"): lambda a: {"name": a.name, "groups": a.groups},
    ("group", "create"): lambda a: {"name": a.name},
    ("group", "add"): lambda a: {},
    ("token", "create"): lambda a: {"description": a.description},
    ("policy", "set"): lambda a: {"statements": a.statements},
    ("repo", "create"): lambda a: {"name": a.name, "public": a.public},
    ("repo", "public"): lambda a: {"public": True},
    ("repo", "private"): lambda a: {"public": False},
    ("quota", "set"): lambda a: {"bytes": a.bytes, "repositories": a.repositories},
    ("rule", "create"): lambda a: {
        "prefix": a.prefix,
        "url": a.url,
        "username": a.username,
        "password": os.environ[a.password_env] if a.password_env else None,
    },
}


def request_of(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """The method, path under ``/admin/v1`` and JSON body a parsed command sends."""
    key = (args.resource, args.action)
    method, template, positional = COMMANDS[key]
    # Repository names and rule prefixes keep their slashes; other names are one segment.
    values = {
        name: quote(getattr(args, name), safe="/" if name in ("name", "prefix") else "")
        for name in positional
    }
    body = BODIES[key](args) if key in BODIES else None
    return method, template.format(**values), body


def run(args: argparse.Namespace) -> int:
    """Send one admin request and print the JSON answer; exit status 1 on an error answer,
    2 without a token."""
    credentials = credentials_of(args.login, args.token_file, os.environ)
    if credentials is None:
        print(f"mirror admin: set {TOKEN_ENV} or --token-file", file=sys.stderr)
        return 2
    method, path, body = request_of(args)
    client = AdminClient(args.mirror_url, credentials, timeout=TIMEOUT)
    try:
        answer = client.call(method, path, body)
    except Unreachable as exc:
        print(f"mirror admin: cannot reach {args.mirror_url}: {exc.reason}", file=sys.stderr)
        return 1
    document = answer.json() if answer.body else {}
    print(json.dumps(document, indent=2), file=sys.stdout if answer.ok else sys.stderr)
    return 0 if answer.ok else 1
