"""Starting and stopping the app: each resource has its own cleanup context, so a start that
fails midway closes exactly what had opened and leaves the data directory free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mirror.app.build import build_app, endpoint_of
from mirror.clock import ManualClock
from mirror.config import Config, load_config
from mirror.db.lock import DataDirLock
from mirror.upstream.limits import UpstreamLimits
from mirror.web.keys import CACHE, METADATA, SERVICES, UPSTREAMS

GOOD = {"host": "good.test", "url": "http://127.0.0.1:9"}


def config_for(data_dir: Path, *upstreams: dict[str, Any], **sections: Any) -> Config:
    """A config over ``data_dir`` (its key file beside it) with the given upstreams."""
    return load_config(
        overrides={
            "storage": {"data_dir": str(data_dir)},
            "encryption": {"kek_file": str(data_dir.with_name(data_dir.name + ".kek"))},
            "upstreams": list(upstreams),
            "default_upstream": upstreams[0]["host"],
            **sections,
        },
        environ={},
    )


def data_dir_is_free(data_dir: Path) -> bool:
    """Whether no server holds the data directory's lock (an exclusive lock can be taken)."""
    lock = DataDirLock(data_dir)
    try:
        lock.acquire(exclusive=True)
    except Exception:
        return False
    lock.release()
    return True


async def failed_start(app: web.Application) -> BaseException:
    """Start ``app`` as ``mirror serve`` does, expect it to fail, clean up; the error."""
    runner = web.AppRunner(app)
    with pytest.raises(Exception) as failure:
        await runner.setup()
    await runner.cleanup()
    return failure.value


async def test_a_running_app_holds_the_data_dir_and_a_stopped_one_has_closed_everything(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    app = build_app(config_for(data_dir, GOOD), clock=ManualClock(), announce=lambda _t: None)
    runner = web.AppRunner(app)
    await runner.setup()
    assert not data_dir_is_free(data_dir)
    assert app[UPSTREAMS].get("good.test").is_open
    await runner.cleanup()
    assert data_dir_is_free(data_dir)
    assert not app[UPSTREAMS].get("good.test").is_open


async def test_a_bad_upstream_ca_file_fails_the_start_and_releases_the_data_dir(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    data_dir = tmp_path / "data"
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate\n")
    broken = config_for(
        data_dir, GOOD, {"host": "bad.test", "url": "https://127.0.0.1:9", "ca_file": str(bad_ca)}
    )
    app = build_app(broken, clock=ManualClock(), announce=lambda _t: None)

    await failed_start(app)

    assert CACHE in app and METADATA in app, "the contexts before the upstreams had started"
    assert UPSTREAMS not in app and SERVICES not in app, "the ones after it never did"
    assert data_dir_is_free(data_dir)
    client = await aiohttp_client(build_app(config_for(data_dir, GOOD), clock=ManualClock()))
    assert (await client.get("/v2/")).status == 200


async def test_an_unreadable_signing_key_fails_the_start_and_closes_what_had_opened(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    data_dir = tmp_path / "data"
    key = tmp_path / "signing-key.pem"
    key.write_text("not a key\n")
    broken = config_for(
        data_dir, GOOD, auth={"enabled": True, "signing_key": str(key), "hash_cost": 4}
    )
    app = build_app(broken, clock=ManualClock(), announce=lambda _t: None)

    error = await failed_start(app)

    assert isinstance(error, ValueError)
    assert not app[UPSTREAMS].get("good.test").is_open, "the started upstream client is closed"
    assert data_dir_is_free(data_dir)
    client = await aiohttp_client(build_app(config_for(data_dir, GOOD), clock=ManualClock()))
    assert (await client.get("/v2/")).status == 200


def test_an_upstreams_limits_reach_its_endpoint(tmp_path: Path) -> None:
    limited = GOOD | {"max_connections": 4, "requests_per_second": 2.5, "bandwidth": 1_000_000}
    config = config_for(tmp_path / "data", limited)
    endpoint = endpoint_of(config.upstreams[0])
    assert endpoint.limits == UpstreamLimits(4, 2.5, 1_000_000)
