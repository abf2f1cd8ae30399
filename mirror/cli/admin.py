"""``mirror admin ...``: the admin API from the command line.

Logs in with ``--user <tenancy>/<user>`` and the auth token from ``$MIRROR_TOKEN`` or
``--token-file`` (never a flag: flags show up in process lists and shell history).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

PREFIX = "/admin/v1"

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
    ("rule", "list"): ("GET", "/tenancies/{tenancy}/rules", ("tenancy",)),
    ("rule", "create"): ("POST", "/tenancies/{tenancy}/rules", ("tenancy", "prefix", "url")),
    ("rule", "delete"): ("DELETE", "/tenancies/{tenancy}/rules/{prefix}", ("tenancy", "prefix")),
}


def add_admin_parser(commands: Any) -> None:
    """Add ``admin`` and its subcommands to the top-level parser's subcommands."""
    admin = commands.add_parser("admin", help="administer tenancies, users, policies, ...")
    admin.add_argument(
        "--url", dest="mirror_url", default=os.environ.get("MIRROR_URL", "http://127.0.0.1:5016")
    )
    admin.add_argument("--user", dest="login", default=os.environ.get("MIRROR_USER", "admin/admin"))
    admin.add_argument("--token-file", type=Path, help="file holding the auth token")
    resources = admin.add_subparsers(dest="resource", required=True)
    by_resource: dict[str, Any] = {}
    for (resource, action), (_, _, positional) in COMMANDS.items():
        if resource not in by_resource:
            by_resource[resource] = resources.add_parser(resource).add_subparsers(
                dest="action", required=True
            )
        sub = by_resource[resource].add_parser(action)
        for name in positional:
            sub.add_argument(name)
        if (resource, action) == ("user", "create"):
            sub.add_argument("--group", action="append", default=[], dest="groups")
        if (resource, action) == ("token", "create"):
            sub.add_argument("--description", default="")
        if (resource, action) == ("policy", "set"):
            sub.add_argument("statements", nargs="+", help="one argument per statement")
        if (resource, action) == ("repo", "create"):
            sub.add_argument("--public", action="store_true")
        if (resource, action) == ("rule", "create"):
            sub.add_argument("--username")
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
    ("rule", "create"): lambda a: {
        "prefix": a.prefix,
        "url": a.url,
        "username": a.username,
        "password": os.environ[a.password_env] if a.password_env else None,
    },
}


def request_of(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """The method, path and JSON body a parsed command sends."""
    key = (args.resource, args.action)
    method, template, positional = COMMANDS[key]
    # Repository names and rule prefixes keep their slashes; other names are one segment.
    values = {
        name: quote(getattr(args, name), safe="/" if name in ("name", "prefix") else "")
        for name in positional
    }
    body = BODIES[key](args) if key in BODIES else None
    return method, PREFIX + template.format(**values), body


def run_admin(args: argparse.Namespace) -> int:
    """Send one admin request and print the JSON answer; exit status 1 on an error answer."""
    token = os.environ.get("MIRROR_TOKEN")
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
    if not token:
        print("mirror admin: set MIRROR_TOKEN or --token-file", file=sys.stderr)
        return 2
    method, path, body = request_of(args)
    credentials = base64.b64encode(f"{args.login}:{token}".encode()).decode()
    request = urllib.request.Request(
        args.mirror_url.rstrip("/") + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Basic {credentials}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read() or b"{}")
            status = 0
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read() or b"{}")
        status = 1
    except urllib.error.URLError as exc:
        print(f"mirror admin: cannot reach {args.mirror_url}: {exc.reason}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2), file=sys.stdout if status == 0 else sys.stderr)
    return status
