"""The issue's targets, evaluated from a run's results (so a saved ``results.json`` can be
re-reported). Each gives the measured ratio or value and whether it is met."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.results import DISTRIBUTION, NGINX, PROXY, Check, Results
from benchmarks.scenarios import lanes, manifests, pushes, tier, wan_upstream, workers

MIRROR = "mirror"


def _median(r: Results, scenario: int, case: str, target: str, metric: str) -> float | None:
    m = r.get(scenario, case, target, metric)
    return m.median if m and m.values else None


def _ratio_check(
    r: Results,
    scenario: int,
    text: str,
    num: tuple[str, str, str],
    den: tuple[str, str, str],
    at_least: float,
) -> Check:
    """``median(num) / median(den) >= at_least``; each is (case, target, metric)."""
    a, b = _median(r, scenario, *num), _median(r, scenario, *den)
    if a is None or b is None or b == 0:
        return Check(scenario, text, "not measured", None)
    ratio = a / b
    return Check(scenario, text, f"{ratio:.2f}x", ratio >= at_least)


def _limit_check(
    r: Results, scenario: int, text: str, key: tuple[str, str, str], at_most: float, unit: str
) -> Check:
    value = _median(r, scenario, *key)
    if value is None:
        return Check(scenario, text, "not measured", None)
    shown = f"{value:.2f}x" if unit == "x" else f"{value:.2f} {unit}"
    return Check(scenario, text, shown, value <= at_most)


def _fact_check(r: Results, scenario: int, text: str, target: str, prefix: str) -> Check:
    facts = [
        f
        for f in r.facts
        if f.scenario == scenario and f.target == target and f.name.startswith(prefix)
    ]
    if not facts:
        return Check(scenario, text, "not measured", None)
    values = ", ".join(f"{f.value:g}" for f in facts)
    return Check(scenario, text, values, all(f.holds for f in facts))


def _scenario1(r: Results) -> list[Check]:
    labels = sorted(
        {m.target for m in r.measurements if m.scenario == 1 and m.target.startswith(MIRROR)}
    )
    if not labels:
        return [Check(1, "warm large-blob pull", "not measured", None)]
    case, metric = "large blob, warm", "throughput"
    on = next((x for x in labels if "encryption on" in x), labels[0])
    off = next((x for x in labels if "encryption off" in x), None)
    checks = [
        _ratio_check(
            r, 1, f"{on}: ≥ 0.85x nginx sendfile", (case, on, metric), (case, NGINX, metric), 0.85
        ),
    ]
    if off is None:
        text = f"{on} (stands in for encryption off): ≥ 1.0x proxy warm"
        checks.append(_ratio_check(r, 1, text, (case, on, metric), (case, PROXY, metric), 1.0))
    else:
        checks.append(
            _ratio_check(
                r, 1, f"{off}: ≥ 1.0x proxy warm", (case, off, metric), (case, PROXY, metric), 1.0
            )
        )
    return checks


def _scenario2(r: Results) -> list[Check]:
    case = "large blob, cold"
    return [
        _ratio_check(
            r,
            2,
            "cold throughput ≥ 0.9x proxy cold (every byte verified first)",
            (case, MIRROR, "throughput"),
            (case, PROXY, "throughput"),
            0.9,
        ),
        _limit_check(
            r,
            2,
            "cold CPU per GiB ≤ 1.5 CPU-s",
            (case, MIRROR, "server CPU per GiB, incl. background work"),
            1.5,
            "CPU-s",
        ),
        _fact_check(r, 2, "upstream bytes = 1.0x blob size", MIRROR, "upstream bytes"),
    ]


def _scenario3(r: Results, herd_size: int) -> list[Check]:
    case = f"{herd_size} concurrent cold pulls"
    return [
        _fact_check(
            r,
            3,
            f"{herd_size} cold pulls: exactly 1 upstream GET",
            MIRROR,
            "upstream GETs of the blob (" + str(herd_size),
        ),
        _limit_check(
            r,
            3,
            "wall time ≤ 1.3x one cold pull",
            (case, MIRROR, "wall time / 1 cold pull"),
            1.3,
            "x",
        ),
        _fact_check(
            r,
            3,
            "chunked Range: exactly 1 upstream GET",
            MIRROR,
            "upstream GETs of the blob (chunked",
        ),
        _fact_check(r, 3, "chunked Range: every piece correct", MIRROR, "chunked Range pieces"),
        _limit_check(
            r,
            3,
            "chunked parallel Range ≤ 1.2x one cold full pull",
            ("chunked parallel Range, cold", MIRROR, "wall time / 1 cold pull"),
            1.2,
            "x",
        ),
    ]


def _scenario4(r: Results) -> list[Check]:
    warm, ttl0, dig = manifests.TAG_WARM, manifests.TAG_TTL0, manifests.DIGEST
    mirror0 = manifests.MIRROR_TTL0
    conns = manifests.CONNECTIONS
    p99 = [
        _limit_check(
            r, 4, f"tag warm p99 ≤ 2 ms ({n} conn)", (f"{warm}, {n} conn", MIRROR, "p99"), 2.0, "ms"
        )
        for n in conns
    ]
    warm_rate = [
        _ratio_check(
            r,
            4,
            f"tag warm req/s ≥ 5x proxy ({n} conn)",
            (f"{warm}, {n} conn", MIRROR, "requests/s"),
            (f"{warm}, {n} conn", PROXY, "requests/s"),
            5.0,
        )
        for n in conns
    ]
    ttl0_rate = [
        _ratio_check(
            r,
            4,
            f"tag TTL 0 req/s ≥ 1.0x proxy ({n} conn)",
            (f"{ttl0}, {n} conn", mirror0, "requests/s"),
            (f"{ttl0}, {n} conn", PROXY, "requests/s"),
            1.0,
        )
        for n in conns
    ]
    p50 = [
        _limit_check(
            r, 4, f"digest p50 ≤ 1 ms ({n} conn)", (f"{dig}, {n} conn", MIRROR, "p50"), 1.0, "ms"
        )
        for n in conns
    ]
    return p99 + warm_rate + ttl0_rate + p50


def _scenario5(r: Results) -> list[Check]:
    cases = [
        f"{client}, {temp}"
        for client in ("skopeo copy", "ctr content fetch")
        for temp in ("cold", "warm")
    ]
    # Time: the proxy's time over ours, so ≥ 1 means no slower.
    return [
        _ratio_check(
            r,
            5,
            f"{c}: no slower than proxy (proxy ÷ mirror time)",
            (c, PROXY, "time"),
            (c, MIRROR, "time"),
            1.0,
        )
        for c in cases
    ]


def _scenario6(r: Results, clients: int) -> list[Check]:
    cases = (
        f"{clients} concurrent pulls, cold",
        f"{clients} concurrent pulls, warm",
        "whole run (VmHWM)",
    )
    return [
        _limit_check(r, 6, f"peak RSS ≤ 200 MiB: {case}", (case, MIRROR, "peak RSS"), 200.0, "MiB")
        for case in cases
    ]


def _scenario7(r: Results) -> list[Check]:
    cases = sorted({m.case for m in r.measurements if m.scenario == 7})
    return [
        _limit_check(r, 7, f"retention {case} < 60 s", (case, MIRROR, "wall time"), 60.0, "s")
        for case in cases
    ]


def _scenario8(r: Results) -> list[Check]:
    """Per mirror variant: push throughput ≥ 1.0x docker-registry's (monolithic, chunked;
    skopeo as docker-registry's time over ours), and peak RSS of the concurrent pushes."""
    cases = sorted({m.case for m in r.measurements if m.scenario == 8})
    labels = sorted(
        {m.target for m in r.measurements if m.scenario == 8 and m.target.startswith(MIRROR)}
    )
    if not labels:
        return [Check(8, "pushes into a hosted registry", "not measured", None)]
    checks = []
    for label in labels:
        for case in cases:
            if r.get(8, case, label, "throughput") and r.get(8, case, DISTRIBUTION, "throughput"):
                text = f"{label}, {case}: ≥ 1.0x docker-registry throughput"
                num, den = (case, label, "throughput"), (case, DISTRIBUTION, "throughput")
                checks.append(_ratio_check(r, 8, text, num, den, 1.0))
        case = pushes.SKOPEO_CASE
        text = f"{label}, {case}: no slower than docker-registry (its time ÷ ours)"
        checks.append(
            _ratio_check(r, 8, text, (case, DISTRIBUTION, "time"), (case, label, "time"), 1.0)
        )
        for case in cases:
            if r.get(8, case, label, "peak RSS"):
                text = f"{label}, {case}: peak RSS ≤ 200 MiB"
                checks.append(_limit_check(r, 8, text, (case, label, "peak RSS"), 200.0, "MiB"))
    return checks


def _scenario10(r: Results) -> list[Check]:
    """The tier's correctness: each blob fetched from upstream once across the tier, upstream
    bytes 1.0x the image. (Its throughput and requests/s have no target: they are reported
    against one replica.)"""
    tier_label = tier.TIER
    return [
        _fact_check(
            r, 10, "tier cold pulls: every blob fetched upstream exactly once", tier_label, "blobs"
        ),
        _fact_check(r, 10, "tier cold pulls: upstream bytes = 1.0x", tier_label, "upstream bytes"),
    ]


def _scenario11(r: Results) -> list[Check]:
    """Issue 15 item 5 with ``--workers 2``."""
    n = sorted({m.case for m in r.measurements if m.scenario == 11 and m.case.endswith("warm")})
    head = f"HEAD by tag, warm, {workers.CONNECTIONS} conn"
    checks = [
        _fact_check(r, 11, "2 workers, cold: exactly 1 upstream GET", workers.WORKERS2, "upstream"),
        _limit_check(
            r,
            11,
            "2 workers: 16-connection tag p99 ≤ 2 ms",
            (head, workers.WORKERS2, "p99"),
            2.0,
            "ms",
        ),
    ]
    for case in n:
        checks.append(
            _ratio_check(
                r,
                11,
                f"2 workers, {case}: ≥ 0.9x nginx aggregate",
                (case, workers.WORKERS2, "aggregate throughput"),
                (case, NGINX, "aggregate throughput"),
                0.9,
            )
        )
    return checks


def _scenario12(r: Results) -> list[Check]:
    """Issue 15 item 6: tag HEAD p99 during the cold fills under the cap, and the caps held
    at the upstream."""
    checks = [
        _limit_check(
            r,
            12,
            f"{conns}-connection tag HEAD p99 during {lanes.FILLS} cold fills ≤ 5 ms",
            (lanes.during_case(conns), lanes.LABEL, "p99"),
            5.0,
            "ms",
        )
        for conns in lanes.CONNECTIONS
    ]
    for text, prefix in (
        (f"≤ {lanes.CAP} requests in flight at the upstream", "upstream requests in flight above"),
        (f"≤ {lanes.CAP} TCP connections at the upstream", "upstream TCP connections above"),
        (
            f"≤ {lanes.CAP - 1} blob GETs in flight at the upstream",
            "upstream blob GETs in flight above",
        ),
    ):
        checks.append(_fact_check(r, 12, text, lanes.LABEL, prefix))
    return checks


def _scenario13(r: Results) -> list[Check]:
    """Issue 15 item 4: through the WAN link, a cold pull through the mirror takes at most
    1.05x the direct pull's time (median of the per-repetition ratios), fetching each byte
    once."""
    checks = []
    for case in (wan_upstream.BLOB_CASE, wan_upstream.IMAGE_CASE):
        checks.append(
            _limit_check(
                r,
                13,
                f"{case}: mirror time ≤ 1.05x direct",
                (case, MIRROR, "time ÷ direct"),
                1.05,
                "x",
            )
        )
        checks.append(
            _fact_check(r, 13, f"{case}: upstream bytes = 1.0x", MIRROR, f"{case}: upstream bytes")
        )
    return checks


def evaluate(r: Results, herd_size: int, clients: int) -> list[Check]:
    """Every target of issues 6 and 11 for the scenarios that ran."""
    scenarios: dict[int, Callable[[], list[Check]]] = {
        1: lambda: _scenario1(r),
        2: lambda: _scenario2(r),
        3: lambda: _scenario3(r, herd_size),
        4: lambda: _scenario4(r),
        5: lambda: _scenario5(r),
        6: lambda: _scenario6(r, clients),
        7: lambda: _scenario7(r),
        8: lambda: _scenario8(r),
        10: lambda: _scenario10(r),
        11: lambda: _scenario11(r),
        12: lambda: _scenario12(r),
        13: lambda: _scenario13(r),
    }
    ran = set(r.scenarios_run)
    return [check for n, checks in scenarios.items() if n in ran for check in checks()]
