"""``mirror serve``: run the pull-through mirror until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.config import Config, ConfigError, load_config
from mirror.crypto.keys import KeyringError
from mirror.crypto.tls import TlsError, server_context
from mirror.db.lock import DataDirLocked

if TYPE_CHECKING:
    from aiohttp import web

    from mirror.app.workers import WorkerSlot
    from mirror.metrics import Metrics

# The server's own log lines (start, stop, access log) come from the "mirror" logger.
log = logging.getLogger("mirror")


# Switches an --upstream flag may end with (``HOST=URL,forward_ns``): the upstream's boolean keys.
UPSTREAM_SWITCHES = ("forward_ns",)
UPSTREAM_SHAPE = "HOST[,ALIAS...]=URL[,forward_ns]"


def _upstream_flag(text: str) -> dict[str, Any]:
    """``HOST[,ALIAS...]=URL[,forward_ns]`` as an upstream table (``forward_ns``: the URL is
    another mirror, chaining); a bad shape is an argparse error."""
    names, sep, target = text.partition("=")
    host, *aliases = names.split(",")
    url, *switches = target.split(",")
    if not sep or not host or not url or not all(aliases):
        raise argparse.ArgumentTypeError(f"expected HOST=URL, or {UPSTREAM_SHAPE}, got {text!r}")
    unknown = [s for s in switches if s not in UPSTREAM_SWITCHES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"--upstream {text!r}: unknown option {unknown[0]!r} after the URL "
            f"(known: {', '.join(UPSTREAM_SWITCHES)})"
        )
    upstream: dict[str, Any] = {"host": host, "url": url}
    if aliases:
        upstream["aliases"] = aliases
    upstream.update(dict.fromkeys(switches, True))
    return upstream


PRECEDENCE = (
    "Each setting comes from, last one winning: the defaults in the code, the --config file "
    "(TOML; conf/mirror.example.toml lists every key), MIRROR_<SECTION>_<KEY> environment "
    "variables (e.g. MIRROR_SERVER_LISTEN, MIRROR_STORAGE_DATA_DIR), then these flags. "
    "The key file defaults to <data-dir>.kek, beside the data directory."
)


def add(commands: Any) -> None:
    """Add ``serve`` and its flags to the ``mirror`` command's subparsers."""
    defaults = Config()
    serve = commands.add_parser("serve", help="run the pull-through mirror", description=PRECEDENCE)
    serve.add_argument("--config", type=Path, help="TOML configuration file (default: none)")
    serve.add_argument(
        "--listen", help=f"HOST:PORT to listen on (default: {defaults.server.listen})"
    )
    serve.add_argument(
        "--data-dir",
        help=f"directory for the cache and metadata (default: {defaults.storage.data_dir})",
    )
    serve.add_argument(
        "--upstream",
        action="append",
        type=_upstream_flag,
        default=[],
        metavar=UPSTREAM_SHAPE,
        help="an upstream registry (repeatable; default: "
        + ", ".join(u.host for u in defaults.upstreams)
        + "); ALIAS is another name for it in paths and ?ns= (a HOST with a port also gets HOST "
        "with ':' replaced by '-', e.g. 127.0.0.1-5000); ,forward_ns: URL is another mirror "
        "(a regional one) that is told HOST with ?ns= (chaining, docs/airgap.md)",
    )
    serve.add_argument(
        "--default-upstream",
        help=f"upstream host for bare repository names (default: {defaults.default_upstream})",
    )
    serve.add_argument(
        "--tag-ttl",
        type=float,
        help=f"seconds before a tag is revalidated (default: {defaults.cache.tag_ttl:g})",
    )
    serve.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="never contact any upstream: serve the cache only (cache.offline; docs/airgap.md)",
    )
    serve.add_argument(
        "--workers",
        help="server processes sharing the port and the data directory: a number or 'auto' "
        f"(one per CPU) (server.workers; default: {defaults.server.workers})",
    )
    # How the supervisor of a multi-process server starts each worker (not for users).
    serve.add_argument("--worker-slot", type=Path, help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults < config file < environment < flags."""
    overrides: dict[str, Any] = {}
    if args.listen:
        overrides.setdefault("server", {})["listen"] = args.listen
    if args.data_dir:
        overrides.setdefault("storage", {})["data_dir"] = args.data_dir
    if args.tag_ttl is not None:
        overrides.setdefault("cache", {})["tag_ttl"] = args.tag_ttl
    if args.offline:
        overrides.setdefault("cache", {})["offline"] = True
    if args.workers is not None:
        overrides.setdefault("server", {})["workers"] = args.workers
    if args.default_upstream is not None:
        overrides["default_upstream"] = args.default_upstream
    if args.upstream:
        flagged = {u["host"] for u in args.upstream}
        configured = load_config(args.config).upstreams
        kept = [
            {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(u).items()
                if v is not None
            }
            for u in configured
            if u.host not in flagged
        ]
        overrides["upstreams"] = [*kept, *args.upstream]
    base = load_config(args.config, overrides=overrides)
    return base


def runner_of(config: Config, app: web.Application, metrics: Metrics) -> web.AppRunner:
    """The app's runner with the server's connection limits: a connection that is idle, or
    has not sent a complete request head, for ``server.keepalive_timeout`` seconds is closed
    (aiohttp arms that timer at connect and after each response, and trickled bytes do not
    re-arm it, so it is also the header-read deadline against slowloris clients)."""
    from aiohttp import web

    from mirror.web.accesslog import access_logger_class

    return web.AppRunner(
        app,
        # Always a logger: requests that are not HTTP are counted and logged even without
        # access lines.
        access_log=log,
        access_log_class=access_logger_class(metrics, lines=config.server.access_log),
        keepalive_timeout=config.server.keepalive_timeout,
    )


async def start_site(config: Config, runner: web.AppRunner) -> web.TCPSite:
    """Listen on ``server.listen`` (HTTPS when ``tls_cert`` is set) with a set-up runner."""
    from aiohttp import web

    tls = config.server
    context = server_context(tls.tls_cert, tls.tls_key, tls.tls_client_ca) if tls.tls_cert else None
    host, _, port = config.server.listen.rpartition(":")
    site = web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True, ssl_context=context)
    await site.start()
    return site


def describe(config: Config, workers: int = 1) -> str:
    """Where the server listens and what it serves from, for its start-up line."""
    return "%s://%s (%sdata in %s, upstreams: %s%s)" % (  # noqa: UP031 - one log line's text
        "https" if config.server.tls_cert else "http",
        config.server.listen,
        f"{workers} workers, " if workers > 1 else "",
        config.storage.data_dir,
        ", ".join(u.host for u in config.upstreams),
        "; OFFLINE: no upstream is contacted" if config.cache.offline else "",
    )


async def start_worker_sites(config: Config, runner: web.AppRunner, slot: WorkerSlot) -> None:
    """Serve on the sockets a worker inherited: its share of ``server.listen`` (HTTPS when
    ``tls_cert`` is set) and its private loopback port for the other workers."""
    from aiohttp import web

    tls = config.server
    context = server_context(tls.tls_cert, tls.tls_key, tls.tls_client_ca) if tls.tls_cert else None
    shared = socket.socket(fileno=slot.listen_fd)
    await web.SockSite(runner, shared, ssl_context=context).start()
    await web.SockSite(runner, socket.socket(fileno=slot.peer_fd)).start()


async def serve(config: Config, worker: WorkerSlot | None = None) -> None:
    """Run the mirror (or one ``worker`` of it) until SIGINT or SIGTERM."""
    from mirror.app.build import build_app
    from mirror.app.threads import open_threads, thread_count
    from mirror.metrics import Metrics

    metrics = Metrics()
    # The loop's blocking work (a fill's hashing, sealing and writes) in threads below its
    # priority, all started now: mirror/app/threads.py says why.
    asyncio.get_running_loop().set_default_executor(
        open_threads(thread_count(os.cpu_count()), config.server.thread_nice)
    )
    runner = runner_of(config, build_app(config, metrics=metrics, worker=worker), metrics)
    await runner.setup()
    try:
        if worker is None:
            await start_site(config, runner)
        else:
            await start_worker_sites(config, runner, worker)
        if worker is None:
            log.info("mirror listening on %s", describe(config))
        else:
            log.info("worker %d (PID %d) serving", worker.index, os.getpid())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if worker is not None:
            from mirror.app.workers import signal_ready

            # The supervisor's end of the lifeline closes when it dies: stop with it.
            loop.add_reader(worker.lifeline_fd, stop.set)
            signal_ready(worker)
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()


def supervise(config: Config, count: int) -> int:
    """Run ``count`` worker processes under a supervisor (``server.workers``)."""
    from mirror.app.supervisor import Supervisor, WorkerFailed

    try:
        return Supervisor(config, count, ready=describe(config, count)).run()
    except WorkerFailed as exc:
        print(f"mirror: cannot serve: {exc}", file=sys.stderr)
        return exc.status if exc.status > 0 else 1


def run(args: argparse.Namespace) -> int:
    """Run ``mirror serve``: 0 after a clean stop, 1 when it cannot listen or another process
    has the data directory, 2 on a bad configuration, key or TLS setup."""
    worker = None
    try:
        if args.worker_slot is not None:
            from mirror.app.workers import local_tier, read_assignment

            worker, config = read_assignment(args.worker_slot)
            config = local_tier(config, worker)
        else:
            config = config_from_args(args)
    except ConfigError as exc:
        print(f"mirror: configuration error: {exc}", file=sys.stderr)
        return 2
    return _serve(config, worker)


def _serve(config: Config, worker: WorkerSlot | None) -> int:
    """Serve ``config`` (as one process, a supervisor, or a ``worker``) and map its failures
    onto exit statuses."""
    import uvloop

    count = 1 if worker is not None else config.server.worker_count(os.cpu_count())
    try:
        if count > 1:
            return supervise(config, count)
        uvloop.run(serve(config, worker))
    except KeyringError as exc:
        print(f"mirror: key error: {exc}", file=sys.stderr)
        return 2
    except TlsError as exc:
        print(f"mirror: TLS error: {exc}", file=sys.stderr)
        return 2
    except DataDirLocked as exc:
        print(f"mirror: cannot serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mirror: cannot serve on {config.server.listen}: {exc}", file=sys.stderr)
        return 1
    return 0
