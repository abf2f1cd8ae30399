"""Wiring of hosted quotas: the persisted facts usage is rebuilt from (hosted links, stored
sizes, repository records), at start and after each retention collection."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from mirror.app.metadata import postgres_settings
from mirror.auth.access import RepoRef
from mirror.auth.service import AuthService
from mirror.blobstore.interface import BlobStore
from mirror.clock import Clock
from mirror.config.model import Config
from mirror.db.postgres.quota import PostgresQuotaRecords
from mirror.db.postgres.shared import SharedDatabase
from mirror.db.roles import MetadataStore
from mirror.hosted.names import HOSTED_PREFIX
from mirror.hosted.quota import Limits, Quotas, TenancyQuotas
from mirror.hosted.quota_metrics import PrometheusQuotaMetrics
from mirror.hosted.tier_quota import TierQuotas
from mirror.metrics import Metrics
from mirror.oci.digest import Digest


def quotas_of(config: Config, metrics: Metrics, clock: Clock) -> TenancyQuotas:
    """The quotas of ``config``'s ``[hosted]`` defaults: this node's, overrides in the data
    directory, or with ``[metadata] backend = "postgres"`` the tier's, in the shared database
    (a reservation nobody freed lapses after ``storage.upload_timeout``)."""
    hosted = config.hosted
    default = Limits(hosted.tenancy_max_bytes or None, hosted.tenancy_max_repositories or None)
    if config.metadata.backend == "postgres":
        database = SharedDatabase.open(postgres_settings(config, os.environ), "quotas")
        records = PostgresQuotaRecords(database)
        published = PrometheusQuotaMetrics(metrics)
        timeout = config.storage.upload_timeout
        return TierQuotas(default, records, clock, timeout=timeout, metrics=published)
    overrides = Path(config.storage.data_dir) / "hosted-quotas.json"
    return Quotas(default, overrides, PrometheusQuotaMetrics(metrics))


def _links(metadata: MetadataStore) -> Iterator[tuple[str, str, Digest]]:
    for upstream, repo, digest in metadata.links_under(HOSTED_PREFIX):
        yield upstream[len(HOSTED_PREFIX) :], repo, digest


def _repositories(metadata: MetadataStore, auth: AuthService | None) -> Iterator[tuple[str, str]]:
    for upstream, repo in metadata.repositories():
        if upstream.startswith(HOSTED_PREFIX):
            yield upstream[len(HOSTED_PREFIX) :], repo
    if auth is None:
        return
    for tenancy in auth.identity.tenancies():
        for record in auth.identity.repositories(tenancy.name):
            ref = RepoRef(tenancy.name, record.name, f"{tenancy.name}/{record.name}")
            if auth.resolver.is_hosted(ref):
                yield tenancy.name, record.name


async def load_quotas(
    quotas: TenancyQuotas, metadata: MetadataStore, store: BlobStore, auth: AuthService | None
) -> None:
    """Rebuild every tenancy's usage from the metadata store, the blob store and (auth on)
    the identity store's repository records."""
    await quotas.load(lambda: _links(metadata), store.stat, lambda: _repositories(metadata, auth))
