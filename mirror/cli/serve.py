"""``mirror serve``: run the pull-through mirror until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.config import Config, ConfigError, load_config
from mirror.crypto.keys import KeyringError
from mirror.crypto.tls import TlsError, server_context
from mirror.db.lock import DataDirLocked

if TYPE_CHECKING:
    from aiohttp import web

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


async def serve(config: Config) -> None:
    """Run the mirror until SIGINT or SIGTERM."""
    from mirror.app.build import build_app
    from mirror.metrics import Metrics

    metrics = Metrics()
    runner = runner_of(config, build_app(config, metrics=metrics), metrics)
    await runner.setup()
    try:
        await start_site(config, runner)
        log.info(
            "mirror listening on %s://%s (data in %s, upstreams: %s%s)",
            "https" if config.server.tls_cert else "http",
            config.server.listen,
            config.storage.data_dir,
            ", ".join(u.host for u in config.upstreams),
            "; OFFLINE: no upstream is contacted" if config.cache.offline else "",
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    """Run ``mirror serve``: 0 after a clean stop, 1 when it cannot listen or another process
    has the data directory, 2 on a bad configuration, key or TLS setup."""
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"mirror: configuration error: {exc}", file=sys.stderr)
        return 2
    import uvloop

    try:
        uvloop.run(serve(config))
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
