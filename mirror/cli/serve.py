"""``mirror serve``: run the pull-through mirror until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from mirror.config import Config, ConfigError, load_config
from mirror.crypto.keys import KeyringError
from mirror.crypto.tls import TlsError, server_context

# The server's own log lines (start, stop, access log) come from the "mirror" logger.
log = logging.getLogger("mirror")


def _upstream_flag(text: str) -> dict[str, str]:
    host, sep, url = text.partition("=")
    if not sep or not host or not url:
        raise argparse.ArgumentTypeError(f"expected HOST=URL, got {text!r}")
    return {"host": host, "url": url}


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
        metavar="HOST=URL",
        help="an upstream registry (repeatable; default: "
        + ", ".join(u.host for u in defaults.upstreams)
        + ")",
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


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults < config file < environment < flags."""
    overrides: dict[str, Any] = {}
    if args.listen:
        overrides.setdefault("server", {})["listen"] = args.listen
    if args.data_dir:
        overrides.setdefault("storage", {})["data_dir"] = args.data_dir
    if args.tag_ttl is not None:
        overrides.setdefault("cache", {})["tag_ttl"] = args.tag_ttl
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


async def serve(config: Config) -> None:
    """Run the mirror until SIGINT or SIGTERM."""
    from aiohttp import web

    from mirror.app.build import build_app
    from mirror.metrics import Metrics
    from mirror.web.accesslog import access_logger_class

    tls = config.server
    context = server_context(tls.tls_cert, tls.tls_key, tls.tls_client_ca) if tls.tls_cert else None
    metrics = Metrics()
    app = build_app(config, metrics=metrics)
    runner = web.AppRunner(
        app,
        # Always a logger: requests that are not HTTP are counted and logged even without
        # access lines.
        access_log=log,
        access_log_class=access_logger_class(metrics, lines=config.server.access_log),
    )
    await runner.setup()
    host, _, port = config.server.listen.rpartition(":")
    site = web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True, ssl_context=context)
    await site.start()
    log.info(
        "mirror listening on %s://%s (data in %s, upstreams: %s)",
        "https" if context else "http",
        config.server.listen,
        config.storage.data_dir,
        ", ".join(u.host for u in config.upstreams),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    """Run ``mirror serve``: 0 after a clean stop, 1 when it cannot listen, 2 on a bad
    configuration, key or TLS setup."""
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
    except OSError as exc:
        print(f"mirror: cannot serve on {config.server.listen}: {exc}", file=sys.stderr)
        return 1
    return 0
