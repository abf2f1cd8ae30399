"""``mirror healthcheck``: ask the local mirror's ``/healthz`` (or ``/readyz``) at the address
and scheme its own configuration gives, so a container ``HEALTHCHECK`` or a probe script
follows ``server.listen`` and ``server.tls_cert`` instead of hard-coding a URL."""

from __future__ import annotations

import argparse
import http.client
import ssl
import sys
from pathlib import Path
from typing import Any

from mirror.config import Config, ConfigError, load_config

# A wildcard listen address is reached on the loopback address of the same family.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}


def add(commands: Any) -> None:
    """Add ``healthcheck`` and its flags to the ``mirror`` command's subparsers."""
    check = commands.add_parser(
        "healthcheck",
        help="exit 0 when the local mirror answers /healthz (for HEALTHCHECK and probes)",
        description="Reads the same --config file and MIRROR_* environment as 'mirror serve' "
        "and asks GET /healthz on server.listen, over HTTPS when server.tls_cert is set.",
    )
    check.add_argument("--config", type=Path, help="TOML configuration file (default: none)")
    check.add_argument(
        "--ready", action="store_true", help="ask /readyz (metadata and an upstream answer)"
    )
    check.add_argument("--timeout", type=float, default=3.0, help="seconds (default: 3)")
    check.add_argument("--cert", help="client certificate (PEM) when server.tls_client_ca is set")
    check.add_argument("--key", help="its private key (PEM)")


def target(config: Config) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of the configured listener, a wildcard replaced by loopback."""
    host, _, port = config.server.listen.rpartition(":")
    host = _WILDCARDS.get(host, host).strip("[]")
    return host, int(port), bool(config.server.tls_cert)


def client_context(cert: str | None, key: str | None) -> ssl.SSLContext:
    """TLS to our own listener on loopback: the server's name is not checked (its certificate
    names the service, not 127.0.0.1); this is a liveness probe, not a trust decision."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(cert, key)
    return context


def probe(config: Config, path: str, timeout: float, context: ssl.SSLContext | None) -> int:
    """The HTTP status of ``GET path`` on the configured listener."""
    host, port, tls = target(config)
    connection: http.client.HTTPConnection
    if tls:
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "mirror-healthcheck"})
        return connection.getresponse().status
    finally:
        connection.close()


def run(args: argparse.Namespace) -> int:
    """0 when the endpoint answers 200, 1 when it answers otherwise or not at all, 2 on a bad
    configuration."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mirror healthcheck: configuration error: {exc}", file=sys.stderr)
        return 2
    path = "/readyz" if args.ready else "/healthz"
    host, port, tls = target(config)
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown}:{port}{path}"
    try:
        context = client_context(args.cert, args.key) if tls else None
        status = probe(config, path, args.timeout, context)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        print(f"mirror healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{url}: {status}")
    return 0 if status == 200 else 1
