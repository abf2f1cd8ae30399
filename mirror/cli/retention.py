"""``mirror retention``: manage retention policies and run retention on demand.

Two ways to reach the mirror, because the server keeps state in memory (batched last pulls,
blobs being served) that another process cannot see:

* ``--url http://127.0.0.1:5016`` talks to the admin API of a running server (always right);
* without ``--url`` the command opens the data directory itself (``--config`` / ``--data-dir``).
  Policy commands are safe next to a running server (the policy database is shared safely
  between processes); ``run`` then needs the server stopped and refuses otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from mirror.app.build import retention_of, router_of
from mirror.blobstore.capacity import CapacityLimit
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.clock import SystemClock
from mirror.config import Config, ConfigError, load_config
from mirror.db.lock import DataDirLock, DataDirLocked
from mirror.db.metadata import Metadata
from mirror.errors import RegistryError
from mirror.metrics import Metrics
from mirror.retention.policy import parse_edit, parse_policy
from mirror.retention.service import RetentionService


class CommandFailed(Exception):
    """The admin operation was refused; the message says why."""


class Admin(Protocol):
    """The retention operations, whichever way the mirror is reached."""

    def policies(self) -> list[dict[str, Any]]: ...
    def create(self, spec: dict[str, Any]) -> dict[str, Any]: ...
    def edit(self, name: str, changes: dict[str, Any]) -> dict[str, Any]: ...
    def delete(self, name: str) -> None: ...
    def attach(self, name: str, repository: str, move: bool) -> dict[str, Any]: ...
    def detach(self, name: str, repository: str) -> dict[str, Any]: ...
    def run(self, dry_run: bool) -> dict[str, Any]: ...


class RemoteAdmin:
    """The admin API of a running server. With auth enabled on it, log in as a system
    administrator: ``MIRROR_USER`` (``<tenancy>/<user>``) and ``MIRROR_TOKEN``."""

    def __init__(self, url: str, environ: Mapping[str, str] | None = None) -> None:
        self._base = url.rstrip("/") + "/admin/v1/retention"
        env = os.environ if environ is None else environ
        self._headers = {"Content-Type": "application/json"}
        if env.get("MIRROR_USER") and env.get("MIRROR_TOKEN"):
            login = f"{env['MIRROR_USER']}:{env['MIRROR_TOKEN']}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(login).decode()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self._base + path,
            data=data,
            method=method,
            headers=self._headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise CommandFailed(_error_message(exc.read(), exc.code)) from None
        except urllib.error.URLError as exc:
            raise CommandFailed(f"cannot reach {self._base}: {exc.reason}") from None
        return json.loads(raw) if raw else None

    def policies(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/policies")["policies"])

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/policies", spec))

    def edit(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/policies/{quote(name)}", changes))

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/policies/{quote(name)}")

    def attach(self, name: str, repository: str, move: bool) -> dict[str, Any]:
        path = f"/policies/{quote(name)}/repositories/{quote(repository)}"
        return dict(self._call("PUT", path, {"move": move}))

    def detach(self, name: str, repository: str) -> dict[str, Any]:
        path = f"/policies/{quote(name)}/repositories/{quote(repository)}"
        return dict(self._call("DELETE", path))

    def run(self, dry_run: bool) -> dict[str, Any]:
        return dict(self._call("POST", "/runs", {"dry_run": dry_run}))


def _error_message(raw: bytes, status: int) -> str:
    try:
        entry = json.loads(raw)["errors"][0]
        return f"{entry['code']}: {entry['message']}"
    except (ValueError, KeyError, IndexError, TypeError):
        return f"HTTP {status}"


class LocalAdmin:
    """The data directory opened by this process (the server may be stopped)."""

    def __init__(self, config: Config, service: RetentionService, data_dir: Path) -> None:
        self._router = router_of(config)
        self._service = service
        self._data_dir = data_dir

    def _repository(self, name: str) -> str:
        target = self._router.resolve(name, None)
        return f"{target.upstream}/{target.repo}"

    def policies(self) -> list[dict[str, Any]]:
        return [p.as_json() for p in self._service.policies()]

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._service.create(parse_policy(spec)).as_json()

    def edit(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._service.edit(name, parse_edit(changes)).as_json()

    def delete(self, name: str) -> None:
        self._service.delete(name)

    def attach(self, name: str, repository: str, move: bool) -> dict[str, Any]:
        return self._service.attach(name, self._repository(repository), move=move).as_json()

    def detach(self, name: str, repository: str) -> dict[str, Any]:
        return self._service.detach(name, self._repository(repository)).as_json()

    def run(self, dry_run: bool) -> dict[str, Any]:
        lock = DataDirLock(self._data_dir)
        try:
            lock.acquire(exclusive=True)
        except DataDirLocked as exc:
            raise CommandFailed(f"{exc}; pass --url to ask the running server") from None
        try:
            return asyncio.run(self._service.run(dry_run=dry_run)).as_json()
        finally:
            lock.release()


@contextmanager
def local_admin(config: Config) -> Iterator[LocalAdmin]:
    """Open the configured data directory for retention commands."""
    data_dir = Path(config.storage.data_dir)
    metadata = Metadata(data_dir / "metadata")
    store = FilesystemBlobStore(data_dir)
    limits = config.retention
    capped = CapacityLimit(
        store,
        Metrics(),
        max_size=limits.max_size,
        high=limits.high_watermark,
        low=limits.low_watermark,
    )
    # No server runs while ``run`` holds the exclusive lock, so nothing is being served.
    service = retention_of(config, metadata, capped, Metrics(), SystemClock(), lambda _d: False)
    try:
        yield LocalAdmin(config, service, data_dir)
    finally:
        service.close()
        metadata.close()


def add_commands(commands: Any) -> None:
    """Add ``retention`` and its subcommands to the ``mirror`` parser."""
    top = commands.add_parser("retention", help="retention policies and runs")
    top.add_argument("--url", help="admin API of a running mirror (http://HOST:PORT)")
    top.add_argument("--config", type=Path, help="TOML configuration (without --url)")
    top.add_argument("--data-dir", help="data directory (without --url)")
    sub = top.add_subparsers(dest="retention_command", required=True)
    run = sub.add_parser("run", help="apply the policies now")
    run.add_argument("--dry-run", action="store_true", help="only print the decisions")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    policy = sub.add_parser("policy", help="manage policies")
    verbs = policy.add_subparsers(dest="policy_command", required=True)
    verbs.add_parser("list", help="every policy").add_argument("--json", action="store_true")
    for verb in ("create", "edit"):
        parser = verbs.add_parser(verb, help=f"{verb} a policy")
        parser.add_argument("name")
        parser.add_argument("--not-pulled-days", type=float, help="select images not pulled")
        parser.add_argument("--not-tagged-days", type=float, help="select images not tagged")
        parser.add_argument("--exempt-tag", action="append", help="exempt tag or glob")
        parser.add_argument("--match", choices=("any", "all"), help="how criteria combine")
        if verb == "edit":
            parser.add_argument(
                "--clear",
                action="append",
                default=[],
                help="unset a field",
                choices=("not_pulled_days", "not_tagged_days", "exempt_tags"),
            )
    verbs.add_parser("delete", help="delete a policy").add_argument("name")
    attach = verbs.add_parser("attach", help="put a repository under a policy")
    attach.add_argument("name")
    attach.add_argument("repository", help="HOST/REPO, or a name of the default upstream")
    attach.add_argument("--move", action="store_true", help="move it from another policy")
    detach = verbs.add_parser("detach", help="return a repository to the global policy")
    detach.add_argument("name")
    detach.add_argument("repository")


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for key in ("not_pulled_days", "not_tagged_days", "match"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.exempt_tag:
        spec["exempt_tags"] = list(args.exempt_tag)
    for key in getattr(args, "clear", []):
        spec[key] = [] if key == "exempt_tags" else None
    return spec


def dispatch(admin: Admin, args: argparse.Namespace) -> None:
    """Run one retention command and print its result."""
    if args.retention_command == "run":
        report = admin.run(args.dry_run)
        print(json.dumps(report, indent=2) if args.json else format_report(report))
        return
    verb = args.policy_command
    if verb == "list":
        policies = admin.policies()
        print(json.dumps(policies, indent=2) if args.json else format_policies(policies))
    elif verb == "create":
        print(format_policies([admin.create({"name": args.name, **_spec(args)})]))
    elif verb == "edit":
        print(format_policies([admin.edit(args.name, _spec(args))]))
    elif verb == "delete":
        admin.delete(args.name)
        print(f"deleted policy {args.name}")
    elif verb == "attach":
        print(format_policies([admin.attach(args.name, args.repository, args.move)]))
    elif verb == "detach":
        print(format_policies([admin.detach(args.name, args.repository)]))


def format_policies(policies: list[dict[str, Any]]) -> str:
    lines = []
    for p in policies:
        criteria = [
            f"not pulled for {p['not_pulled_days']:g} days"
            if p["not_pulled_days"] is not None
            else "",
            f"not tagged for {p['not_tagged_days']:g} days"
            if p["not_tagged_days"] is not None
            else "",
        ]
        chosen = f" {p['match'].upper()} ".join(c for c in criteria if c) or "retain everything"
        exempt = ", ".join(p["exempt_tags"]) or "-"
        repos = ", ".join(p["repositories"]) or ("(every other repository)" if p["global"] else "-")
        lines.append(
            f"{p['name']}: {chosen}; exempt tags: {exempt}; repositories: {repos}"
            + (f"; cooling until {p['cooling_until']}" if p["cooling_until"] else "")
        )
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """One line per image: the action, the image, and the rule that retained or selected it."""
    lines = []
    for line in report["images"]:
        action = {"delete": "DELETE" if not report["dry_run"] else "WOULD DELETE"}.get(
            line["action"], "keep"
        )
        tags = ",".join(line["tags"]) or "-"
        lines.append(
            f"{action:12} {line['repository']}@{line['digest'][:19]} policy={line['policy']} "
            f"rule={line['rule']} last-pull={line['last_pull'] or 'never'} "
            f"last-tagged={line['last_tagged'] or 'never'} tags={tags}: {line['reason']}"
        )
    selected = sum(1 for line in report["images"] if line["action"] == "delete")
    if report["dry_run"]:
        lines.append(f"dry run: {len(report['images'])} images, {selected} would be deleted")
    else:
        lines.append(
            f"run {report['run']}: {len(report['images'])} images, {report['evicted']} evicted, "
            f"{len(report['deleted'])} objects deleted, {report['bytes_freed']} bytes freed, "
            f"{len(report['deferred'])} deferred (in use)"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``mirror retention``; returns the exit status."""
    try:
        if args.url:
            dispatch(RemoteAdmin(args.url), args)
            return 0
        overrides = {"storage": {"data_dir": args.data_dir}} if args.data_dir else None
        with local_admin(load_config(args.config, overrides=overrides)) as admin:
            dispatch(admin, args)
        return 0
    except ConfigError as exc:
        print(f"mirror retention: configuration error: {exc}", file=sys.stderr)
        return 2
    except (CommandFailed, RegistryError) as exc:
        message = exc.message if isinstance(exc, RegistryError) else str(exc)
        code = f"{exc.code.name}: " if isinstance(exc, RegistryError) else ""
        print(f"mirror retention: {code}{message}", file=sys.stderr)
        return 1
