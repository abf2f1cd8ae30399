"""The ``mirror`` command: ``serve`` runs the mirror, ``demo`` shows it working offline."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from mirror.cli import maintenance
from mirror.cli import retention as retention_cli
from mirror.cli.admin import add_admin_parser, run_admin
from mirror.config import Config, ConfigError, load_config
from mirror.crypto.keys import KeyringError
from mirror.crypto.tls import TlsError, server_context

log = logging.getLogger("mirror")


def _upstream_flag(text: str) -> dict[str, str]:
    host, sep, url = text.partition("=")
    if not sep or not host or not url:
        raise argparse.ArgumentTypeError(f"expected HOST=URL, got {text!r}")
    return {"host": host, "url": url}


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(prog="mirror", description=__doc__)
    top.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the pull-through mirror")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--listen", help="HOST:PORT to listen on (default 127.0.0.1:5016)")
    serve.add_argument("--data-dir", help="directory for the cache and metadata")
    serve.add_argument(
        "--upstream",
        action="append",
        type=_upstream_flag,
        default=[],
        metavar="HOST=URL",
        help="an upstream registry (repeatable)",
    )
    serve.add_argument("--default-upstream", help="upstream host for bare repository names")
    serve.add_argument("--tag-ttl", type=float, help="seconds before a tag is revalidated")

    add_admin_parser(commands)

    demo = commands.add_parser("demo", help="pull through the mirror from a local origin, twice")
    demo.add_argument("--work-dir", type=Path, help="keep files here (default: a temp dir)")
    maintenance.add_commands(commands)
    retention_cli.add_commands(commands)
    return top


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
    from mirror.web.accesslog import AccessLogger

    tls = config.server
    context = server_context(tls.tls_cert, tls.tls_key, tls.tls_client_ca) if tls.tls_cert else None
    app = build_app(config)
    runner = web.AppRunner(
        app,
        access_log=log if config.server.access_log else None,
        access_log_class=AccessLogger,
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mirror`` console script."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
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
    if args.command in maintenance.COMMANDS:
        return maintenance.run(args)
    if args.command == "admin":
        return run_admin(args)
    if args.command == "retention":
        return retention_cli.main(args)
    if args.command == "demo":
        from mirror.cli.demo import run_demo

        return asyncio.run(run_demo(args.work_dir))
    return 2


if __name__ == "__main__":
    sys.exit(main())
