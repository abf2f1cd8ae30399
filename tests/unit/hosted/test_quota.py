"""Per-tenancy quotas: usage counted once per tenancy, reservations that keep concurrent
pushes under a limit, rebuilds from persisted links, and operators' overrides."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.quota import BYTES, REPOSITORIES, Limits, Quotas
from mirror.hosted.quota_metrics import PrometheusQuotaMetrics
from mirror.metrics import Metrics
from mirror.oci.digest import Digest


def digest(text: str) -> Digest:
    return Digest("sha256", hashlib.sha256(text.encode()).hexdigest())


def quotas_of(tmp_path: Path, default: Limits | None = None) -> tuple[Quotas, Metrics]:
    metrics = Metrics()
    quotas = Quotas(default or Limits(), tmp_path / "quotas.json", PrometheusQuotaMetrics(metrics))
    return quotas, metrics


def refusals(metrics: Metrics, tenancy: str, quota: str) -> float | None:
    labels = {"tenancy": tenancy, "quota": quota}
    return metrics.registry.get_sample_value("mirror_hosted_quota_refusals_total", labels)


def test_an_object_linked_by_two_repositories_counts_once(tmp_path: Path) -> None:
    quotas, _ = quotas_of(tmp_path)
    quotas.linked("acme", "one", digest("a"), 100)
    quotas.linked("acme", "two", digest("a"), 100)
    quotas.linked("acme", "two", digest("b"), 10)
    assert (quotas.usage("acme").bytes, quotas.usage("acme").repositories) == (110, 2)
    quotas.unlinked("acme", "one", digest("a"))
    assert quotas.usage("acme").bytes == 110
    quotas.unlinked("acme", "two", digest("a"))
    assert quotas.usage("acme").bytes == 10
    quotas.forget_repository("acme", "two")
    assert (quotas.usage("acme").bytes, quotas.usage("acme").repositories) == (0, 1)


def test_reservations_count_until_released_and_a_refusal_counts_nothing(tmp_path: Path) -> None:
    quotas, metrics = quotas_of(tmp_path, Limits(bytes=100, repositories=1))
    first = quotas.reserve("acme", "app", digest("a"), 60)
    with pytest.raises(RegistryError) as refused:
        quotas.reserve("acme", "app", digest("b"), 50)
    assert refused.value.code is ErrorCode.DENIED and refused.value.status == 403
    assert refused.value.detail == {
        "tenancy": "acme",
        "quota": BYTES,
        "used": 60,
        "adding": 50,
        "limit": 100,
    }
    # A new repository over the repository quota is refused before any bytes are held.
    with pytest.raises(RegistryError):
        quotas.reserve("acme", "second", digest("c"), 1)
    assert quotas.usage("acme").repositories == 1
    first.release()
    with quotas.reserve("acme", "app", digest("b"), 50) as held:
        held.commit("app", digest("b"))
    assert quotas.usage("acme").bytes == 50
    # An object the tenancy stores already adds nothing, even at the limit.
    quotas.set_limits("acme", Limits(bytes=50))
    quotas.reserve("acme", "app", digest("b"), 50).commit("app", digest("b"))
    assert refusals(metrics, "acme", BYTES) == 1
    assert refusals(metrics, "acme", REPOSITORIES) == 1


async def test_a_rebuild_keeps_what_was_linked_while_it_read_sizes(tmp_path: Path) -> None:
    quotas, _ = quotas_of(tmp_path)
    links = [("acme", "app", digest("a")), ("acme", "app", digest("gone"))]

    async def size_of(found: Digest) -> int | None:
        await asyncio.sleep(0)
        if found == digest("a"):
            # A push links a new object while the rebuild waits on the disk.
            links.append(("acme", "app", digest("new")))
            quotas.linked("acme", "app", digest("new"), 7)
            return 100
        return None  # reclaimed by the collector: not counted

    await quotas.load(lambda: list(links), size_of, lambda: [("acme", "empty")])
    usage = quotas.usage("acme")
    assert (usage.bytes, usage.repositories) == (107, 2)


def test_overrides_persist_and_fall_back_to_the_default(tmp_path: Path) -> None:
    quotas, metrics = quotas_of(tmp_path, Limits(bytes=1000))
    quotas.set_limits("acme", Limits(bytes=None, repositories=3))
    again, _ = quotas_of(tmp_path, Limits(bytes=1000))
    assert again.limits("acme") == Limits(None, 3)
    assert again.limits("other") == Limits(1000, None)
    labels = {"tenancy": "acme", "quota": REPOSITORIES}
    assert metrics.registry.get_sample_value("mirror_hosted_quota_limit", labels) == 3
    again.set_limits("acme", None)
    assert quotas_of(tmp_path, Limits(bytes=1000))[0].limits("acme") == Limits(1000, None)
    again.forget_tenancy("acme")
    assert "acme" not in again.tenancies()
