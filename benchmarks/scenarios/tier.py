"""Scenario 10: a tier of 3 replicas behind nginx's digest ring (``mirror tier
nginx-config``) against one replica, in the same run: ``tier_clients`` concurrent pulls of the
50-layer image cold (each blob fetched from upstream once across the tier, every body hashed)
and warm (aggregate throughput), and tag ``HEAD`` requests/s with 16 connections. Server CPU
is summed over every replica (and nginx), so the report shows where the cores run out."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass

from benchmarks.bench import Bench, rotated
from benchmarks.clients import cpu_seconds, image_pulls, loadgen
from benchmarks.scenarios.manifests import ACCEPT
from benchmarks.seed import LAYERS_REPO, TAG
from benchmarks.servers import MirrorServer, MirrorVariant, TierFront
from tests.peers.ports import free_port

NUMBER = 10
TITLE = "Tier of 3 replicas behind nginx vs one replica"
TIER = "tier of 3 (nginx ring)"
ONE = "one replica"
REPLICAS = 3
CONNECTIONS = 16


@dataclass
class Target:
    """Where clients pull, and the server processes whose CPU counts."""

    label: str
    url: str
    pids: list[int]

    def cpu(self) -> float:
        """CPU seconds of every server process so far (with their children)."""
        return sum(cpu_seconds(pid) for pid in self.pids)


def start_tier(bench: Bench) -> tuple[list[MirrorServer], TierFront]:
    """Three empty replicas listing each other in ``[tier]``, and nginx with their ring."""
    ports = [free_port() for _ in range(REPLICAS)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    secret = bench.work / f"tier-secret-{ports[0]}"
    secret.write_text(random.Random(ports[0]).randbytes(32).hex())
    secret.chmod(0o600)
    replicas = []
    try:
        for port, url in zip(ports, urls, strict=True):
            toml = (
                f"[tier]\nreplicas = {json.dumps(urls)}\nself = {json.dumps(url)}\n"
                f"secret_file = {json.dumps(str(secret))}\n"
            )
            variant = MirrorVariant("replica", bench.settings.mirror_args, toml)
            replicas.append(bench.mirror(variant, port=port))
        servers = tuple(f"127.0.0.1:{port}" for port in ports)
        front = TierFront(bench.work / f"tier-nginx-{ports[0]}", servers).start(bench.processes)
    except BaseException:
        for replica in replicas:
            bench.stop_mirror(replica)
        raise
    return replicas, front


def run(bench: Bench) -> None:
    """Per repetition, a fresh tier and a fresh single replica: cold pulls, warm pulls, tag
    HEADs, in rotating order."""
    for rep in range(bench.settings.reps):
        replicas, front = start_tier(bench)
        one = bench.mirror()
        try:
            targets = [
                Target(TIER, front.url, [r.pid for r in replicas] + [_pid(front)]),
                Target(ONE, one.url, [one.pid]),
            ]
            order = rotated(targets, rep)
            for target in order:
                _cold(bench, target)
            for target in order:
                _pulls(bench, target, "warm", verify=False)
            for target in order:
                _manifests(bench, target)
        finally:
            front.stop(bench.processes)
            for server in [*replicas, one]:
                bench.stop_mirror(server)
        _scaling(bench)
        bench.progress(f"  rep {rep + 1}/{bench.settings.reps} done")


def _pid(front: TierFront) -> int:
    assert front.process is not None
    return front.process.pid


def _image_bytes(bench: Bench) -> int:
    return sum(blob.size for blob in bench.seeded.layers)


def _cold(bench: Bench, target: Target) -> None:
    """Every client pulls the cold image at once, hashing every body; the upstream's log says
    how often each blob was fetched."""
    mark = bench.mark()
    _pulls(bench, target, "cold", verify=True)
    entries = bench.settle(mark)
    gets = Counter(
        blob.digest
        for e in entries
        for blob in bench.seeded.layers
        if e.method == "GET" and e.path.endswith(f"/blobs/{blob.digest}")
    )
    fetched = sum(
        e.size for e in entries if e.method == "GET" and "/blobs/" in e.path and e.status == 200
    )
    blobs = len(bench.seeded.layers)
    clients = bench.settings.tier_clients
    r = bench.results
    wrong = sum(1 for blob in bench.seeded.layers if gets[blob.digest] != 1)
    r.fact(
        NUMBER,
        target.label,
        f"blobs not fetched from upstream exactly once ({clients} clients, {blobs} blobs)",
        wrong,
        0,
    )
    r.fact(NUMBER, target.label, "upstream bytes / image bytes", fetched / _image_bytes(bench), 1.0)


def _pulls(bench: Bench, target: Target, temperature: str, *, verify: bool) -> None:
    s, r = bench.settings, bench.results
    case = f"{s.tier_clients} concurrent image pulls, {temperature}"
    before = target.cpu()
    out = image_pulls(target.url, LAYERS_REPO, TAG, s.tier_clients, verify, s.transfer_timeout)
    cpu = target.cpu() - before
    wall = float(out["wall"])
    expected = s.tier_clients * _image_bytes(bench)
    if out["bytes"] != expected:
        raise RuntimeError(f"{target.label}: {out['bytes']} bytes received, expected {expected}")
    r.add(NUMBER, case, target.label, "wall time", "s", wall, higher_is_better=False)
    r.add(
        NUMBER,
        case,
        target.label,
        "aggregate throughput",
        "MB/s",
        expected / wall / 1e6,
        higher_is_better=True,
    )
    r.add(
        NUMBER, case, target.label, "server cores busy", "cores", cpu / wall, higher_is_better=False
    )
    r.add(
        NUMBER,
        case,
        target.label,
        "client cores busy",
        "cores",
        float(out["cpu"]) / wall,
        higher_is_better=False,
    )
    bench.progress(
        f"  {target.label}, {case}: {expected / wall / 1e6:.0f} MB/s, "
        f"server CPU {cpu / wall:.2f} cores, client {float(out['cpu']) / wall:.2f}"
    )


def _manifests(bench: Bench, target: Target) -> None:
    s, r = bench.settings, bench.results
    url = f"{target.url}/v2/{LAYERS_REPO}/manifests/{TAG}"
    loadgen(url, "HEAD", [ACCEPT], CONNECTIONS, 1.0, 0.0)  # warms the tag where it is routed
    out = loadgen(url, "HEAD", [ACCEPT], CONNECTIONS, s.load_duration, s.load_warmup)
    statuses = out["statuses"]
    requests = out["requests"]
    assert isinstance(statuses, dict) and isinstance(requests, int)
    if requests == 0:
        raise RuntimeError(f"{target.label}: no tag HEAD answered within {s.load_duration} s")
    r.fact(
        NUMBER, target.label, "tag HEAD non-200 answers", requests - int(statuses.get("200", 0)), 0
    )
    case = f"HEAD by tag, warm, {CONNECTIONS} conn"
    for metric, key, unit, higher in (
        ("requests/s", "rps", "req/s", True),
        ("p99", "p99_ms", "ms", False),
    ):
        value = out[key]
        assert isinstance(value, float)
        r.add(NUMBER, case, target.label, metric, unit, value, higher_is_better=higher)


def _scaling(bench: Bench) -> None:
    """The tier's warm aggregate over one replica's, this repetition."""
    r = bench.results
    case = f"{bench.settings.tier_clients} concurrent image pulls, warm"
    tier = r.get(NUMBER, case, TIER, "aggregate throughput")
    one = r.get(NUMBER, case, ONE, "aggregate throughput")
    if tier and one and one.values[-1] > 0:
        r.add(
            NUMBER,
            case,
            TIER,
            "÷ one replica",
            "x",
            tier.values[-1] / one.values[-1],
            higher_is_better=True,
        )
