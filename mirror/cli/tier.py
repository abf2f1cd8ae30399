"""``mirror tier``: tools for running replicas as a tier (``nginx-config``, ``haproxy-config``,
``repair``)."""

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
from mirror.tier import haproxy, nginx
from mirror.tier.haproxy_ring import HAProxyRing
from mirror.tier.placement import replica_entry, ring_members, server_of
from mirror.tier.repair_call import repair_tier
from mirror.tier.signing import PeerSigner


def add(commands: Any) -> None:
    """Add ``mirror tier`` and its subcommands."""
    tier = commands.add_parser("tier", help="run replicas as a regional tier")
    sub = tier.add_subparsers(dest="tier_command", required=True)
    for name, balancer in (("nginx-config", "nginx"), ("haproxy-config", "HAProxy")):
        config = sub.add_parser(
            name,
            help=f"print the {balancer} configuration that hashes requests onto the replicas' ring",
        )
        config.add_argument(
            "--replica",
            action="append",
            required=True,
            metavar="URL",
            help="a replica as in [tier] replicas, 'URL' or 'URL weight=N' (repeat for each)",
        )
        config.add_argument(
            "--listen", default="127.0.0.1:5000", help=f"{balancer}'s listen address"
        )
    sub.choices["nginx-config"].add_argument(
        "--fail-timeout", type=int, default=10, help="seconds a failed replica is passed over"
    )
    sub.choices["haproxy-config"].add_argument(
        "--check-interval",
        type=int,
        default=2000,
        help="milliseconds between health checks of each replica",
    )
    sub.choices["haproxy-config"].add_argument(
        "--resolve",
        action="store_true",
        help="resolve the replicas' names again at run time (DNS names such as a StatefulSet's)",
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
    return _balancer_config(args)


def _repair(config: Config, timeout: float) -> int:
    """Ask every replica of ``config``'s tier for a repair pass: 0 when each answered and
    nothing is lost, 1 otherwise (one JSON report a line)."""
    tier = config.tier
    if not tier.enabled:
        print("mirror tier repair: tier.replicas is not set", file=sys.stderr)
        return 2
    signer = PeerSigner(read_secret(tier.secret_file), SystemClock())
    sender = server_of(tier.self)
    urls = [replica_entry(entry)[0] for entry in tier.replicas]
    reports = asyncio.run(repair_tier(urls, signer, sender, per_replica=timeout))
    for report in reports:
        print(json.dumps(report, sort_keys=True))
    return 0 if all("error" not in r and not r.get("missing") for r in reports) else 1


def _balancer_config(args: argparse.Namespace) -> int:
    """Print the nginx or HAProxy configuration for the given replicas."""
    command = f"mirror tier {args.tier_command}"
    try:
        members = ring_members(args.replica)
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    servers = [m.server for m in members]
    if len(set(servers)) != len(servers):
        print(f"{command}: a replica is given twice", file=sys.stderr)
        return 2
    if args.tier_command == "haproxy-config":
        try:
            HAProxyRing(members)  # refuses two servers that would get one HAProxy id
        except ValueError as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            return 2
    weights = {m.server: m.weight for m in members if m.weight != 1}
    if args.tier_command == "haproxy-config":
        text = haproxy.render(
            haproxy.HAProxyTier(
                servers,
                listen=args.listen,
                weights=weights,
                check_interval=args.check_interval,
                resolve=args.resolve,
            )
        )
    else:
        text = nginx.render(
            nginx.NginxTier(
                servers, listen=args.listen, weights=weights, fail_timeout=args.fail_timeout
            )
        )
    sys.stdout.write(text)
    return 0
