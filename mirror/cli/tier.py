"""``mirror tier``: tools for running replicas as a tier (``nginx-config``, ``repair``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from mirror.app.tier import read_secret
from mirror.cli.cachedir import add_cache_flags, run_on_cache
from mirror.clock import SystemClock
from mirror.config import Config
from mirror.tier.nginx import NginxTier, render
from mirror.tier.placement import server_of
from mirror.tier.repair_call import repair_tier
from mirror.tier.signing import PeerSigner


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

    repair = sub.add_parser(
        "repair",
        help="restore the copies of hosted blobs: one repair pass on every replica now",
    )
    add_cache_flags(repair)
    repair.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for each replica's pass"
    )


def run(args: argparse.Namespace) -> int:
    """Run a ``mirror tier`` subcommand."""
    if args.tier_command == "repair":
        return run_on_cache(args, lambda config: _repair(config, args.timeout), sys.stderr)
    return _nginx_config(args)


def _repair(config: Config, timeout: float) -> int:
    """Ask every replica of ``config``'s tier for a repair pass: 0 when each answered and
    nothing is lost, 1 otherwise (one JSON report a line)."""
    tier = config.tier
    if not tier.enabled:
        print("mirror tier repair: tier.replicas is not set", file=sys.stderr)
        return 2
    signer = PeerSigner(read_secret(tier.secret_file), SystemClock())
    sender = server_of(tier.self)
    reports = asyncio.run(repair_tier(tier.replicas, signer, sender, per_replica=timeout))
    for report in reports:
        print(json.dumps(report, sort_keys=True))
    return 0 if all("error" not in r and not r.get("missing") for r in reports) else 1


def _nginx_config(args: argparse.Namespace) -> int:
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
