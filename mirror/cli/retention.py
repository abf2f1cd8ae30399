"""``mirror retention``: manage retention policies and run retention on demand.

Two ways to reach the mirror, because the server keeps state in memory (batched last pulls,
blobs being served) that another process cannot see:

* ``--url http://127.0.0.1:5016`` talks to the admin API of a running server (always right);
* without ``--url`` the command opens the data directory itself (``--config`` / ``--data-dir``).
  Policy commands are safe next to a running server (the policy database is shared safely
  between processes); ``run`` then needs the server stopped and refuses otherwise.

With ``--url`` the credentials follow :mod:`mirror.cli.client` (``--user``/``$MIRROR_USER``,
``--token-file``/``$MIRROR_TOKEN``), the same as ``mirror admin``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import quote

from mirror.app.build import audit_log, retention_of, router_of
from mirror.app.metadata import open_metadata
from mirror.app.stores import open_store
from mirror.blobstore.capacity import CapacityLimit
from mirror.blobstore.filesystem import FilesystemBlobStore
from mirror.cli.client import (
    CREDENTIALS_HELP,
    PREFIX,
    AdminClient,
    Unreachable,
    add_credential_flags,
    credentials_of,
)
from mirror.cli.retention_text import format_line, format_policies, format_report
from mirror.clock import SystemClock
from mirror.config import Config, ConfigError, load_config
from mirror.crypto.keys import KeyringError
from mirror.db.lock import DataDirLock, DataDirLocked
from mirror.errors import RegistryError
from mirror.metrics import Metrics
from mirror.retention.lines import line_dict
from mirror.retention.names import resolve_policy_repository
from mirror.retention.policy import parse_edit, parse_policy
from mirror.retention.report import json_chunks
from mirror.retention.service import RetentionService

TIMEOUT = 600.0


class CommandFailed(Exception):
    """The admin operation was refused; the message says why."""


class Admin(Protocol):
    """The retention operations, whichever way the mirror is reached."""

    def policies(self) -> list[dict[str, Any]]:
        """Every policy, as the admin API shows it."""

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a custom policy from ``spec``; ``CommandFailed``/``RegistryError`` if refused."""

    def edit(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change the criteria or exempt tags of policy ``name``."""

    def delete(self, name: str) -> None:
        """Delete policy ``name`` (its repositories return to the global policy)."""

    def attach(self, name: str, repository: str, move: bool) -> dict[str, Any]:
        """Put ``repository`` under policy ``name`` (``move`` takes it from another policy)."""

    def detach(self, name: str, repository: str) -> dict[str, Any]:
        """Return ``repository`` from policy ``name`` to the global policy."""

    def run(self, dry_run: bool) -> dict[str, Any]:
        """Apply the policies now (or only report, with ``dry_run``); the run's report."""

    def dry_run(self, out: TextIO, as_json: bool) -> None:
        """Print a dry run's report to ``out`` (as JSON, or as lines)."""

    def print_run(self, out: TextIO, as_json: bool) -> None:
        """Apply the policies now; print the run's report to ``out`` (as JSON, or as lines)."""


class RemoteAdmin:
    """The retention part of a running server's admin API, through ``client``."""

    def __init__(self, client: AdminClient) -> None:
        self._client = client

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            answer = self._client.call(method, "/retention" + path, body)
        except Unreachable as exc:
            base = f"{self._client.url}{PREFIX}/retention"
            raise CommandFailed(f"cannot reach {base}: {exc.reason}") from None
        if not answer.ok:
            raise CommandFailed(_error_message(answer.body, answer.status))
        return answer.json()

    def policies(self) -> list[dict[str, Any]]:
        """``GET .../retention/policies`` on the server."""
        return list(self._call("GET", "/policies")["policies"])

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``POST .../retention/policies`` on the server."""
        return dict(self._call("POST", "/policies", spec))

    def edit(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """``PATCH .../retention/policies/{name}`` on the server."""
        return dict(self._call("PATCH", f"/policies/{quote(name)}", changes))

    def delete(self, name: str) -> None:
        """``DELETE .../retention/policies/{name}`` on the server."""
        self._call("DELETE", f"/policies/{quote(name)}")

    def attach(self, name: str, repository: str, move: bool) -> dict[str, Any]:
        """``PUT .../policies/{name}/repositories/{repository}`` on the server."""
        path = f"/policies/{quote(name)}/repositories/{quote(repository)}"
        return dict(self._call("PUT", path, {"move": move}))

    def detach(self, name: str, repository: str) -> dict[str, Any]:
        """``DELETE .../policies/{name}/repositories/{repository}`` on the server."""
        path = f"/policies/{quote(name)}/repositories/{quote(repository)}"
        return dict(self._call("DELETE", path))

    def run(self, dry_run: bool) -> dict[str, Any]:
        """``POST .../retention/runs`` on the server."""
        return dict(self._call("POST", "/runs", {"dry_run": dry_run}))

    def dry_run(self, out: TextIO, as_json: bool) -> None:
        """A dry run on the server, printed once its answer is complete."""
        report = self.run(True)
        print(json.dumps(report, indent=2) if as_json else format_report(report), file=out)

    def print_run(self, out: TextIO, as_json: bool) -> None:
        """A run on the server, printed once its answer is complete."""
        report = self.run(False)
        print(json.dumps(report, indent=2) if as_json else format_report(report), file=out)


def _error_message(raw: bytes, status: int) -> str:
    try:
        entry = json.loads(raw)["errors"][0]
        return f"{entry['code']}: {entry['message']}"
    except (ValueError, KeyError, IndexError, TypeError):
        return f"HTTP {status}"


class LocalAdmin:
    """The data directory opened by this process (the server may be stopped)."""

    def __init__(self, config: Config, service: RetentionService) -> None:
        self._router = router_of(config)
        self._service = service

    def _repository(self, name: str) -> str:
        return resolve_policy_repository(self._router, name)

    def policies(self) -> list[dict[str, Any]]:
        """Every policy in the data directory."""
        return [p.as_json() for p in self._service.policies()]

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a custom policy in the data directory (parsed as the admin API parses it)."""
        return self._service.create(parse_policy(spec)).as_json()

    def edit(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change policy ``name`` in the data directory."""
        return self._service.edit(name, parse_edit(changes)).as_json()

    def delete(self, name: str) -> None:
        """Delete policy ``name`` from the data directory."""
        self._service.delete(name)

    def attach(self, name: str, repository: str, move: bool) -> dict[str, Any]:
        """Attach ``repository`` (resolved as the server resolves names) to policy ``name``."""
        return self._service.attach(name, self._repository(repository), move=move).as_json()

    def detach(self, name: str, repository: str) -> dict[str, Any]:
        """Detach ``repository`` from policy ``name``."""
        return self._service.detach(name, self._repository(repository)).as_json()

    def run(self, dry_run: bool) -> dict[str, Any]:
        """Run retention on the data directory (the server must be stopped to delete)."""
        return asyncio.run(self._service.run(dry_run=dry_run)).as_json()

    def dry_run(self, out: TextIO, as_json: bool) -> None:
        """A dry run on the data directory, printed as it goes (one repository in memory)."""
        asyncio.run(_print_dry_run(self._service, out, as_json))

    def print_run(self, out: TextIO, as_json: bool) -> None:
        """A run on the data directory, its report printed from where the run spilled it
        (the same text as ``json.dumps``, never all of it in memory)."""
        asyncio.run(_print_run(self._service, out, as_json))


async def _print_dry_run(service: RetentionService, out: TextIO, as_json: bool) -> None:
    async with service.dry_run() as run:
        if as_json:
            async for chunk in json_chunks(run.head, run.batches):
                out.write(chunk)
            out.write("\n")
            return
        images = selected = 0
        async for batch in run.batches:
            for line in map(line_dict, batch):
                out.write(format_line(line, dry_run=True) + "\n")
                selected += line["action"] == "delete"
            images += len(batch)
        out.write(f"dry run: {images} images, {selected} would be deleted\n")


async def _print_run(service: RetentionService, out: TextIO, as_json: bool) -> None:
    report = await service.run(dry_run=False)
    if as_json:
        async for chunk in json_chunks(report.head(), report.batches()):
            out.write(chunk)
        out.write("\n")
        return
    head = report.head()
    async for batch in report.batches():
        for line in map(line_dict, batch):
            out.write(format_line(line, dry_run=False) + "\n")
    out.write(
        f"run {head['run']}: {report.images.count} images, {head['evicted']} evicted, "
        f"{len(head['deleted'])} objects deleted, {head['bytes_freed']} bytes freed, "
        f"{len(head['deferred'])} deferred (in use)\n"
    )


@contextmanager
def local_admin(config: Config, *, for_run: bool) -> Iterator[LocalAdmin]:
    """Open the configured data directory for retention commands; raises ``CommandFailed``
    when a run is asked while a server holds the directory, ``KeyringError`` when the keys
    cannot open the cache.

    A run takes the data directory exclusively and then opens the cache as the server does
    (decrypting, so sizes in the report, audit log and metrics are plaintext sizes). Policy
    commands only read and write the retention database, which is safe next to a running
    server, so they open no keys and never read the blob store they are handed.
    """
    data_dir = Path(config.storage.data_dir)
    metadata = open_metadata(config, data_dir)
    lock = DataDirLock(data_dir)
    try:
        if for_run:
            try:
                lock.acquire(exclusive=True)
            except DataDirLocked as exc:
                raise CommandFailed(f"{exc}; pass --url to ask the running server") from None
        store = open_store(config) if for_run else FilesystemBlobStore(data_dir)
        limits = config.retention
        capped = CapacityLimit(
            store,
            Metrics(),
            max_size=limits.max_size,
            high=limits.high_watermark,
            low=limits.low_watermark,
        )
        # No server runs while ``run`` holds the exclusive lock, so nothing is being served.
        clock = SystemClock()
        audit = audit_log(config, clock)
        service = retention_of(config, metadata, capped, Metrics(), clock, lambda _d: False, audit)
        try:
            yield LocalAdmin(config, service)
        finally:
            service.close()
            audit.close()
    finally:
        if for_run:
            lock.release()
        metadata.close()


def add(commands: Any) -> None:
    """Add ``retention`` and its subcommands to the ``mirror`` parser."""
    top = commands.add_parser(
        "retention",
        help="retention policies and runs",
        description=(
            "Retention policies and runs, through a running server (--url) or on the data "
            f"directory. {CREDENTIALS_HELP}"
        ),
    )
    top.add_argument("--url", help="admin API of a running mirror (http://HOST:PORT)")
    add_credential_flags(top)
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
    if args.retention_command == "run" and args.dry_run:
        admin.dry_run(sys.stdout, args.json)
        return
    if args.retention_command == "run":
        admin.print_run(sys.stdout, args.json)
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


def run(args: argparse.Namespace) -> int:
    """Entry point of ``mirror retention``; returns the exit status."""
    try:
        if args.url:
            credentials = credentials_of(args.login, args.token_file, os.environ)
            dispatch(RemoteAdmin(AdminClient(args.url, credentials, timeout=TIMEOUT)), args)
            return 0
        overrides = {"storage": {"data_dir": args.data_dir}} if args.data_dir else None
        config = load_config(args.config, overrides=overrides)
        with local_admin(config, for_run=args.retention_command == "run") as admin:
            dispatch(admin, args)
        return 0
    except ConfigError as exc:
        print(f"mirror retention: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyringError as exc:
        print(f"mirror retention: key error: {exc}", file=sys.stderr)
        return 2
    except (CommandFailed, RegistryError) as exc:
        message = exc.message if isinstance(exc, RegistryError) else str(exc)
        code = f"{exc.code.name}: " if isinstance(exc, RegistryError) else ""
        print(f"mirror retention: {code}{message}", file=sys.stderr)
        return 1
