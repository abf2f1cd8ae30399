"""``mirror bench`` in quick mode, through the CLI, against this mirror and against the
distribution proxy (``docker-registry`` with ``proxy.remoteurl``) in front of an in-process
origin. No speed is asserted: the structure of the report, and that counts and errors are
right (every case sends what was asked; a wrong password is errors, not a crash; pushes only
with --allow-push; open-loop latency counts from the intended send time)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from mirror.bench.plan import WORKLOADS
from mirror.cli.check import own_mirror
from mirror.cli.main import main
from mirror.db.identity.records import PullThroughRule
from mirror.testing.images import build_image, random_layer
from mirror.testing.loopback import serve_on_loopback
from mirror.testing.registry import InProcessRegistry
from tests.peers.factory import ImageFactory
from tests.peers.htpasswd import write_htpasswd
from tests.peers.registry import Registry
from tests.peers.tls import make_test_ca

from .conftest import AuthMirror

QUICK = [
    "--requests",
    "4",
    "--pulls",
    "2",
    "--sweep",
    "1,2",
    "--clients",
    "3",
    "--layers",
    "2",
    "--layer-size",
    "64KiB",
    "--chunk-size",
    "16KiB",
    "--push-size",
    "32KiB",
    "--push-chunk",
    "8KiB",
    "--quiet",
]


async def bench(*argv: str) -> int:
    """``mirror bench ARGV`` in a thread (the CLI runs its own event loop)."""
    return await asyncio.to_thread(main, ["bench", *argv])


def rows(report: dict[str, Any], workload: str) -> list[dict[str, Any]]:
    return [row for row in report["rows"] if row["workload"] == workload]


def assert_counts_are_exact(report: dict[str, Any]) -> None:
    for row in report["rows"]:
        assert row["sent"] == row["requested"], row
        assert row["errors"] == sum(row["error_kinds"].values()), row


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    async with InProcessRegistry().serve() as url:
        yield url


async def test_every_workload_against_our_mirror(origin: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    async with own_mirror(origin, urlsplit(origin).netloc, 1.0) as target:
        workloads = ",".join(w for w in WORKLOADS if w != "push")
        status = await bench(
            target,
            "--origin",
            origin,
            "--allow-push",
            "--workload",
            workloads,
            *QUICK,
            "--json",
            str(out),
        )
    report = json.loads(out.read_text())
    assert status == 0, report["rows"]
    assert_counts_are_exact(report)
    assert report["errors"] == 0
    cases = {(row["workload"], row["case"]) for row in report["rows"]}
    assert {
        ("manifest", "HEAD by tag"),
        ("manifest", "GET by tag"),
        ("manifest", "HEAD by digest"),
        ("manifest", "GET by digest"),
        ("sweep", "c=1"),
        ("sweep", "c=2"),
        ("cold", "cold pull"),
        ("cold", "warm pull"),
        ("rollout", "3 nodes, new image"),
    } <= cases
    assert [r["requested"] for r in rows(report, "manifest")] == [4, 4, 4, 4]
    assert [r["requested"] for r in rows(report, "cold")] == [2, 2]
    assert rows(report, "rollout")[0]["concurrency"] == 3
    pull = rows(report, "pull")[0]
    assert pull["size"] > 2 * 2 * (64 << 10)  # two pulls of two 64 KiB layers, and more
    for key in ("p50", "p90", "p99", "max"):
        assert pull["latency_s"][key] > 0
    assert report["machine"]["cpu_model"] and len(report["machine"]["load_average"]) == 3


async def test_distribution_proxy_cold_then_warm(origin: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    async with Registry(tmp_path / "proxy", proxy_remote_url=origin) as proxy:
        status = await bench(
            proxy.url,
            "--origin",
            origin,
            "--allow-push",
            "--workload",
            "pull,blob,range,manifest,cold,rollout",
            *QUICK,
            "--json",
            str(out),
        )
    report = json.loads(out.read_text())
    assert_counts_are_exact(report)
    assert {row["workload"] for row in report["rows"]} == {
        "pull",
        "blob",
        "range",
        "manifest",
        "cold",
        "rollout",
    }
    assert report["errors"] == 0, [[r["case"], r["error_kinds"]] for r in report["rows"]]
    assert status == 0


async def test_compare_shows_ratios_and_writes_plots_and_a_self_contained_page(
    origin: str, tmp_path: Path
) -> None:
    page, plots = tmp_path / "report.html", tmp_path / "plots"
    async with own_mirror(origin, urlsplit(origin).netloc, 1.0) as target:
        status = await bench(
            target,
            "--compare",
            origin,
            "--origin",
            origin,
            "--allow-push",
            "--workload",
            "manifest,sweep",
            *QUICK,
            "--html",
            str(page),
            "--plots",
            str(plots),
            "--json",
            str(tmp_path / "r.json"),
        )
    assert status == 0
    report = json.loads((tmp_path / "r.json").read_text())
    compared = report["comparisons"]
    assert len(compared) == 6 and {c["baseline"] for c in compared} == {urlsplit(target).netloc}
    assert all(c["p50_ratio"] > 0 for c in compared)
    assert sorted(p.name for p in plots.iterdir()) == ["cdf-manifest.png", "sweep.png"]
    html = page.read_text()
    assert html.count("src='data:image/png;base64,") == 2
    for external in ("<script", "<link", "src='http", 'src="http', "url("):
        assert external not in html


async def test_push_is_refused_without_allow_push_and_measured_with_it(
    origin: str, tmp_path: Path
) -> None:
    registry = InProcessRegistry()
    async with registry.serve() as target:
        assert await bench(target, "--workload", "push", *QUICK) == 2
        assert await bench(target, "--origin", origin, "--workload", "pull", *QUICK) == 2
        assert registry.content.blobs == {}
        out = tmp_path / "push.json"
        status = await bench(
            target, "--workload", "push", "--allow-push", *QUICK, "--json", str(out)
        )
    report = json.loads(out.read_text())
    assert status == 0
    assert [row["case"] for row in report["rows"]] == ["monolithic 32768 B", "chunked 32768 B"]
    assert_counts_are_exact(report)
    assert len(registry.content.blobs) == 8  # 4 monolithic and 4 chunked random blobs


async def test_basic_auth_right_and_wrong_password(tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
    docker_config = tmp_path / "config.json"
    async with Registry(tmp_path / "reg", htpasswd=htpasswd) as registry:
        auth = base64.b64encode(b"alice:secret").decode()
        docker_config.write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        good = tmp_path / "good.json"
        status = await bench(
            registry.url,
            "--origin",
            registry.url,
            "--allow-push",
            "--docker-config",
            str(docker_config),
            "--workload",
            "pull,manifest",
            *QUICK,
            "--json",
            str(good),
        )
        assert status == 0, good.read_text()
        image = json.loads(good.read_text())["rows"][0]["case"].split()[0]
        bad = tmp_path / "bad.json"
        status = await bench(
            registry.url,
            "--image",
            image,
            "--user",
            "alice:wrong",
            "--workload",
            "pull,manifest",
            *QUICK,
            "--json",
            str(bad),
        )
    report = json.loads(bad.read_text())
    assert status == 1
    assert_counts_are_exact(report)
    assert [(r["workload"], r["case"]) for r in report["rows"]] == [
        ("pull", f"{image} x3"),
        ("manifest", "HEAD by tag"),
        ("manifest", "GET by tag"),
    ]
    for row in report["rows"]:
        assert row["errors"] == row["requested"] and row["error_kinds"] == {"HTTP 401": row["sent"]}
    assert any("unresolved: HTTP 401" in note for note in report["notes"])


@pytest.fixture
async def slow_target(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A registry that takes 0.2 s over every answer; yields its URL and an image in it."""
    registry = InProcessRegistry()
    built = build_image(tmp_path / "slow", "v1", [random_layer(random.Random(4), 4096)])
    registry.content.add_image("team/slow", built)

    @web.middleware
    async def slow(request: web.Request, handler: Any) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        response: web.StreamResponse = await handler(request)
        return response

    app = registry.app()
    app.middlewares.append(slow)
    async with serve_on_loopback(app) as url:
        yield url, "team/slow:v1"


async def test_open_loop_latency_counts_from_the_intended_send_time(
    slow_target: tuple[str, str], tmp_path: Path
) -> None:
    """The target takes 0.2 s per request on one connection, asked at 20/s: the fifth
    request is meant to go at 0.2 s but is answered only at about 1.0 s."""
    target, image = slow_target
    for mode, extra in (("open", ["--rate", "20"]), ("closed", [])):
        status = await bench(
            target,
            "--image",
            image,
            "--workload",
            "manifest",
            "--requests",
            "5",
            "--connections",
            "1",
            "--no-warmup",
            "--quiet",
            *extra,
            "--json",
            str(tmp_path / f"{mode}.json"),
        )
        assert status == 0
    opened = json.loads((tmp_path / "open.json").read_text())["rows"]
    closed = json.loads((tmp_path / "closed.json").read_text())["rows"]
    assert {row["mode"] for row in opened} == {"open"} and opened[0]["rate"] == 20
    for row in opened:
        assert row["sent"] == 5 and row["errors"] == 0
        # Served one at a time: answers at ~0.2, 0.4, ... 1.0 s for sends due at 0, 0.05, ...
        assert row["latency_s"]["max"] >= 0.75, row
        assert row["latency_s"]["p50"] >= 0.45, row
    for row in closed:
        assert row["mode"] == "closed" and row["latency_s"]["p50"] >= 0.2


async def test_token_flow_of_an_auth_enabled_mirror(
    auth_mirror: AuthMirror, image_factory: ImageFactory, tmp_path: Path
) -> None:
    """This mirror with ``[auth]`` challenges with Bearer: the bench gets a token from the
    realm with the user's login and pulls; a wrong token gets 401s counted as errors."""
    pushed = image_factory.push("v1", layers=1, layer_size=2048)
    auth_mirror.identity.create_tenancy("acme", 0)
    auth_mirror.identity.create_rule(PullThroughRule("acme", "up", pushed.registry.url))
    policy = ["allow any-user to read repos in tenancy"]
    login, token = auth_mirror.user("acme", "reader", policy=policy)
    image = f"acme/up/{pushed.repo}:v1"
    for name, secret in (("good", token), ("bad", token + "x")):
        await bench(
            auth_mirror.url,
            "--image",
            image,
            "--user",
            f"{login}:{secret}",
            "--workload",
            "pull,manifest",
            *QUICK,
            "--json",
            str(tmp_path / name),
        )
    good = json.loads((tmp_path / "good").read_text())
    bad = json.loads((tmp_path / "bad").read_text())
    assert good["errors"] == 0 and len(good["rows"]) == 5, good["rows"]
    assert_counts_are_exact(good)
    assert_counts_are_exact(bad)
    assert all(row["errors"] == row["requested"] for row in bad["rows"])
    assert {kind for row in bad["rows"] for kind in row["error_kinds"]} == {"HTTP 401"}


async def test_tls_is_verified_against_ca_or_skipped_with_insecure(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    registry = InProcessRegistry()
    built = build_image(tmp_path / "layout", "v1", [random_layer(random.Random(3), 4096)])
    registry.content.add_image("team/app", built)
    ca = make_test_ca(tmp_path / "ca")
    server = await aiohttp_server(registry.app(), host="127.0.0.1", ssl=ca.server_context())
    url = f"https://127.0.0.1:{server.port}"
    outcomes = {}
    for name, flags in (
        ("ca", ["--ca", str(ca.ca_cert)]),
        ("none", []),
        ("insecure", ["--insecure"]),
    ):
        out = tmp_path / f"{name}.json"
        await bench(
            url, "--image", "team/app:v1", "--workload", "pull", *flags, *QUICK, "--json", str(out)
        )
        outcomes[name] = json.loads(out.read_text())["rows"][0]
    assert outcomes["ca"]["errors"] == 0 and outcomes["insecure"]["errors"] == 0
    untrusted = outcomes["none"]
    assert untrusted["errors"] == untrusted["requested"] == untrusted["sent"] == 2
    assert list(untrusted["error_kinds"]) == ["ClientConnectorCertificateError"]


async def test_ns_is_sent_with_every_request(origin: str, tmp_path: Path) -> None:
    """This mirror routes ``?ns=`` to the upstream of that name: the origin's host works, and
    an unknown name is an error on every pull (nothing falls back to the default)."""
    host = urlsplit(origin).netloc
    async with own_mirror(origin, host, 1.0) as target:
        for name, ns in (("known", host), ("unknown", "unknown.example")):
            await bench(
                target,
                "--origin",
                origin,
                "--allow-push",
                "--ns",
                ns,
                "--workload",
                "pull",
                *QUICK,
                "--json",
                str(tmp_path / name),
            )
    known = json.loads((tmp_path / "known").read_text())["rows"][0]
    unknown = json.loads((tmp_path / "unknown").read_text())["rows"][0]
    assert known["errors"] == 0 and known["sent"] == 2
    assert unknown["errors"] == unknown["sent"] == 2, unknown


async def test_progress_on_stderr_and_the_table_on_stdout(
    origin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with own_mirror(origin, urlsplit(origin).netloc, 1.0) as target:
        argv = [target, "--origin", origin, "--allow-push", "--workload", "manifest"]
        argv += [flag for flag in QUICK if flag != "--quiet"]
        assert await bench(*argv) == 0
    captured = capsys.readouterr()
    label = urlsplit(target).netloc
    for case in ("HEAD by tag", "GET by tag", "HEAD by digest", "GET by digest"):
        assert f"{label} manifest {case}: 4/4 ops" in captured.err
    header = captured.out.splitlines()[0].split()
    assert header[:6] == ["target", "workload", "case", "mode", "c", "ok/sent"]
    assert header[6:10] == ["p50", "p90", "p99", "max"] and "errors" in header
    assert "machine: " in captured.out


async def test_credentials_never_follow_an_upload_location_to_another_host(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """A hostile target that challenges for Basic and then sends the upload elsewhere: the
    other host sees the blob but never the password."""
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        await request.read()
        return web.Response(status=201)

    other_app = web.Application()
    other_app.router.add_put("/upload", elsewhere)
    other = await aiohttp_server(other_app, host="127.0.0.1")

    async def start(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") is None:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return web.Response(status=202, headers={"Location": f"{other.make_url('/upload')}"})

    hostile_app = web.Application()
    hostile_app.router.add_post("/v2/bench/push/blobs/uploads/", start)
    hostile = await aiohttp_server(hostile_app, host="127.0.0.1")
    out = tmp_path / "push.json"
    status = await bench(
        str(hostile.make_url("")),
        "--workload",
        "push",
        "--allow-push",
        "--user",
        "alice:secret",
        *QUICK,
        "--requests",
        "2",
        "--json",
        str(out),
    )
    assert status == 1  # the chunked pushes fail: the other host takes no PATCH
    assert json.loads(out.read_text())["rows"][0]["errors"] == 0
    assert len(seen) == 2 and seen == [None, None]


async def test_the_run_stops_itself_at_the_deadline(
    slow_target: tuple[str, str], tmp_path: Path
) -> None:
    target, image = slow_target
    out = tmp_path / "deadline.json"
    status = await bench(
        target,
        "--image",
        image,
        "--workload",
        "manifest,pull",
        "--requests",
        "50",
        "--connections",
        "1",
        "--no-warmup",
        "--quiet",
        "--deadline",
        "1.5",
        "--json",
        str(out),
    )
    report = json.loads(out.read_text())
    assert status == 0
    first = report["rows"][0]
    assert first["case"] == "HEAD by tag" and 0 < first["sent"] < first["requested"] == 50
    assert first["errors"] == 0
    assert all(row["workload"] == "manifest" for row in report["rows"])
    assert any("pull: cut short: --deadline reached" in note for note in report["notes"])


async def test_cold_images_from_a_file_without_push_access(tmp_path: Path) -> None:
    """Without ``--origin``, ``--cold-images`` names images the mirror has not cached: each
    is pulled cold, then warm, and nothing is pushed anywhere."""
    registry = InProcessRegistry()
    rng = random.Random(5)
    for i in range(3):
        built = build_image(tmp_path / f"img{i}", "v1", [random_layer(rng, 8192)])
        registry.content.add_image(f"team/cold{i}", built)
    blobs_before = dict(registry.content.blobs)
    listing = tmp_path / "cold.txt"
    listing.write_text("# never pulled\nteam/cold0:v1\nteam/cold1:v1\n\nteam/cold2:v1\n")
    out = tmp_path / "cold.json"
    async with registry.serve() as origin, own_mirror(origin, urlsplit(origin).netloc, 1.0) as m:
        status = await bench(
            m, "--cold-images", str(listing), "--workload", "cold", *QUICK, "--json", str(out)
        )
    report = json.loads(out.read_text())
    assert status == 0
    assert [(r["case"], r["requested"], r["sent"], r["errors"]) for r in report["rows"]] == [
        ("cold pull", 3, 3, 0),
        ("warm pull", 3, 3, 0),
    ]
    assert registry.content.blobs == blobs_before
