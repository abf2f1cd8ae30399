"""``mirror tier``: tools for running replicas as a tier (``nginx-config``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mirror.tier.nginx import NginxTier, render
from mirror.tier.placement import server_of


def add(commands: Any) -> None:
    """Add ``mirror tier`` and its subcommands."""
    tier = commands.add_parser("tier", help="run replicas as a regional tier")
    sub = tier.add_subparsers(dest="tier_command", required=True)
    nginx = sub.add_parser(
        "nginx-config",
        help="print the nginx configuration that hashes requests onto the replicas' ring",
    )
    nginx.add_argument(
        "--replica",
        action="append",
        required=True,
        metavar="URL",
        help="a replica's URL, as in [tier] replicas (repeat for each replica)",
    )
    nginx.add_argument("--listen", default="127.0.0.1:5000", help="nginx's listen address")
    nginx.add_argument(
        "--fail-timeout", type=int, default=10, help="seconds a failed replica is passed over"
    )


def run(args: argparse.Namespace) -> int:
    """Print the nginx configuration for the given replicas."""
    try:
        servers = [server_of(url) for url in args.replica]
    except ValueError as exc:
        print(f"mirror tier nginx-config: {exc}", file=sys.stderr)
        return 2
    if len(set(servers)) != len(servers):
        print("mirror tier nginx-config: a replica is given twice", file=sys.stderr)
        return 2
    tier = NginxTier(servers, listen=args.listen, fail_timeout=args.fail_timeout)
    sys.stdout.write(render(tier))
    return 0
