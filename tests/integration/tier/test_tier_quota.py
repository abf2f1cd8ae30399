"""Issue 14, quotas are shared state: three replicas on one PostgreSQL admit concurrent pushes
into one tenancy against one count (exactly as many as fit the byte limit), and every
replica's admin API and /metrics answer the same usage; a delete or a limit set at one
replica holds at the others at once."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from prometheus_client.parser import text_string_to_metric_families

from mirror.app.build import build_app
from mirror.clock import ManualClock
from mirror.config import load_config
from mirror.db.identity.records import ADMINISTRATORS
from mirror.metrics import Metrics
from mirror.web.keys import AUTH
from tests.integration.conftest import AUTH_REGISTRY_HOST, AUTH_TEST_HASH_COST
from tests.integration.test_hosted_quota import Hosted, call, digest_of, error, push_blob

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BLOB = 1_000
FIT = 10


async def start_replicas(aiohttp_server: Any, tmp_path: Path, dsn: str, count: int) -> list[Hosted]:
    """``count`` auth-enabled replicas sharing ``dsn`` (identity, metadata, quotas), each with
    its own data directory; tenancy acme with an administrator, created at the first."""
    replicas: list[Hosted] = []
    logins: dict[str, str] = {}
    key = tmp_path / "tier-signing-key.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    for index in range(count):
        data_dir = tmp_path / f"replica-{index}"
        config = load_config(
            overrides={
                "storage": {"data_dir": str(data_dir), "chunk_size": 4096},
                "upstreams": [{"host": "upstream.test", "url": "http://127.0.0.1:9"}],
                "default_upstream": "upstream.test",
                "encryption": {"kek_file": str(tmp_path / f"replica-{index}.kek")},
                "hosted": {"tenancy_max_bytes": FIT * BLOB},
                "retention": {"interval": 0},
                "metadata": {"backend": "postgres", "dsn": dsn},
                "auth": {
                    "enabled": True,
                    "hash_cost": AUTH_TEST_HASH_COST,
                    "default_tenancy": "nodes",
                    "registry_hosts": [AUTH_REGISTRY_HOST],
                    "signing_key": str(key),
                },
            },
            environ={},
        )
        clock, metrics = ManualClock(), Metrics()
        app = build_app(config, clock=clock, metrics=metrics, announce=lambda _: None)
        server = await aiohttp_server(app, host="127.0.0.1")
        if index == 0:
            store, now = app[AUTH].identity, clock.now()
            store.create_tenancy("acme", now)
            for tenancy, user in (("acme", "boss"), ("admin", "operator")):
                store.create_user(tenancy, user, now)
                store.set_member(tenancy, ADMINISTRATORS, user, True)
                _, token = store.create_token(tenancy, user, "t", now, cost=AUTH_TEST_HASH_COST)
                logins[f"{tenancy}-{user}"] = f"{tenancy}/{user}:{token}"
        replicas.append(Hosted(server, app, clock, metrics, logins))
    return replicas


async def stored_bytes_metric(replica: Hosted) -> float:
    """``mirror_hosted_stored_bytes{tenancy="acme"}`` as the replica's /metrics answers it."""
    async with aiohttp.ClientSession() as http:
        headers = replica.headers("admin-operator")
        async with http.get(f"{replica.url}/metrics", headers=headers) as resp:
            assert resp.status == 200
            text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mirror_hosted_stored_bytes" and sample.labels == {"tenancy": "acme"}:
                return sample.value
    raise AssertionError("no mirror_hosted_stored_bytes series for acme")


async def used(replica: Hosted) -> Any:
    status, body = await call(replica, "GET", "/admin/v1/tenancies/acme/usage")
    assert status == 200, body
    return body["used"]


async def test_three_replicas_pushing_at_once_admit_exactly_what_fits_the_tenancy(
    aiohttp_server: Any, tmp_path: Path, postgres_dsn: str
) -> None:
    replicas = await start_replicas(aiohttp_server, tmp_path, postgres_dsn, 3)
    rng = random.Random(14)
    blobs = [rng.randbytes(BLOB) for _ in range(8 * len(replicas))]

    # 24 distinct 1,000-byte blobs pushed at once, 8 through each replica, into one tenancy
    # whose limit is 10,000 bytes.
    answers = await asyncio.gather(
        *(push_blob(replicas[i % 3], f"acme/app{i % 3}", blob) for i, blob in enumerate(blobs))
    )
    statuses = [status for status, _ in answers]
    assert statuses.count(201) == FIT and statuses.count(403) == len(blobs) - FIT
    assert {error(body)["code"] for status, body in answers if status == 403} == {"DENIED"}

    # Every replica answers the same usage, in the admin API and in /metrics.
    for replica in replicas:
        assert await used(replica) == {"bytes": FIT * BLOB, "repositories": 3}
        assert await stored_bytes_metric(replica) == FIT * BLOB

    # A blob deleted through one replica frees its bytes for a push through another.
    pushed = [blob for blob, (status, _) in zip(blobs, answers, strict=True) if status == 201]
    index = blobs.index(pushed[0])
    name = f"acme/app{index % 3}"
    status, _ = await call(replicas[2], "DELETE", f"/v2/{name}/blobs/{digest_of(pushed[0])}")
    assert status == 202
    assert await used(replicas[0]) == {"bytes": (FIT - 1) * BLOB, "repositories": 3}
    assert (await push_blob(replicas[1], "acme/app1", rng.randbytes(BLOB)))[0] == 201
    assert (await push_blob(replicas[0], "acme/app0", rng.randbytes(BLOB)))[0] == 403


async def test_a_limit_an_operator_sets_at_one_replica_governs_the_others(
    aiohttp_server: Any, tmp_path: Path, postgres_dsn: str
) -> None:
    a, b = await start_replicas(aiohttp_server, tmp_path, postgres_dsn, 2)
    status, body = await call(
        a, "PUT", "/admin/v1/tenancies/acme/quota", "admin-operator", json_body={"bytes": 1_500}
    )
    assert status == 200, body
    assert (await push_blob(b, "acme/app", b"x" * 1_000))[0] == 201
    status, body = await push_blob(b, "acme/app", b"y" * 1_000)
    assert status == 403 and error(body)["detail"]["limit"] == 1_500
    status, body = await call(b, "GET", "/admin/v1/tenancies/acme/usage")
    assert body["limits"] == {"bytes": 1_500, "repositories": None}
