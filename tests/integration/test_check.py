"""``mirror check`` in quick mode: against this mirror (``--start-mirror``, through the CLI)
every check passes; against the distribution proxy (``docker-registry`` with
``proxy.remoteurl`` = the check's proxy) the run completes and reports every check."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mirror.check.checks import ORDER
from mirror.check.suite import Settings, run_suite
from mirror.cli.check import own_mirror
from mirror.cli.main import main
from mirror.testing.registry import InProcessRegistry
from tests.peers.ports import free_port
from tests.peers.registry import Registry

QUICK = {"layer_size": 256 << 10, "deadline": 90.0}


async def test_our_mirror_passes_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    async with InProcessRegistry().serve() as origin:
        status = await asyncio.to_thread(
            main, ["check", "--start-mirror", "--origin", origin, "--quick", "--json"]
        )
    report = json.loads(capsys.readouterr().out)
    outcomes = {check["name"]: check["outcome"] for check in report["checks"]}
    assert outcomes == {name: "pass" for name, _ in ORDER}, report
    assert status == 0
    herd = next(check for check in report["checks"] if check["name"] == "herd")
    assert herd["evidence"]["upstream_gets"] == 1


async def test_a_target_run_elsewhere_points_at_the_fixed_proxy_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    async with InProcessRegistry().serve() as origin:
        host = urlsplit(origin).netloc
        async with own_mirror(f"http://127.0.0.1:{port}", host, 1.0) as target:
            argv = ["check", target, "--origin", origin, "--proxy-port", str(port), "--quick"]
            status = await asyncio.to_thread(main, argv)
    captured = capsys.readouterr()
    assert f"counting proxy on http://127.0.0.1:{port}" in captured.err
    assert captured.out.splitlines()[-1] == f"{len(ORDER)}/{len(ORDER)} passed"
    assert status == 0


async def test_distribution_proxy_run_completes(tmp_path: Path) -> None:
    @asynccontextmanager
    async def distribution(proxy_url: str) -> AsyncIterator[str]:
        async with Registry(tmp_path / "proxy", proxy_remote_url=proxy_url) as registry:
            yield registry.url

    async with InProcessRegistry().serve() as origin:
        settings = Settings(origin=origin, ns=urlsplit(origin).netloc, **QUICK)  # type: ignore[arg-type]
        results = await run_suite(settings, distribution)
    assert [r.name for r in results] == [name for name, _ in ORDER]
    assert all(r.outcome in ("pass", "fail") and r.summary for r in results), results
    (tmp_path / "results.txt").write_text(
        "\n".join(f"{r.name} {r.outcome} {r.summary}" for r in results)
    )
    print("\n".join(f"{r.name}: {r.outcome}: {r.summary} {r.evidence}" for r in results))


def test_target_and_start_mirror_are_exclusive() -> None:
    assert main(["check", "--origin", "http://127.0.0.1:1"]) == 2
    assert main(["check", "http://127.0.0.1:1", "--start-mirror", "--origin", "http://x"]) == 2
