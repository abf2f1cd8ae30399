"""``mirror healthcheck`` asks the running mirror at the address and scheme its configuration
gives: plain HTTP, HTTPS, HTTPS with client certificates; nothing listening is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.cli.healthcheck import target
from mirror.config import load_config
from tests.peers.mirror_serve import MirrorServe
from tests.peers.ports import free_port
from tests.peers.tls import CertAuthority, make_test_ca

pytestmark = pytest.mark.integration

_CHECKOUT = Path(__file__).resolve().parents[2]


def config_text(tmp_path: Path, tls: str = "") -> str:
    return (
        'default_upstream = ""\n'
        f'[server]\nlisten = "127.0.0.1:{{port}}"\n{tls}'
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[encryption]\nkek_file = "{tmp_path / "kek"}"\n'
        '[[upstreams]]\nhost = "upstream.test"\nurl = "http://127.0.0.1:9"\n'
    )


def healthcheck(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRROR_")}
    return subprocess.run(
        [sys.executable, "-m", "mirror", "healthcheck", "--config", str(config), *flags],
        env={**env, "PYTHONPATH": str(_CHECKOUT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    return make_test_ca(tmp_path / "ca")


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[MirrorServe]:
    with MirrorServe(tmp_path / "serve", config_text(tmp_path)) as server:
        yield server


def test_healthcheck_follows_the_configured_port_over_plain_http(plain: MirrorServe) -> None:
    done = healthcheck(plain.base_dir / "mirror.toml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"http://127.0.0.1:{plain.port}/healthz: 200"


def test_healthcheck_ready_asks_readyz_which_fails_without_an_upstream(plain: MirrorServe) -> None:
    # The only upstream is a closed port: /readyz answers 503, so --ready exits 1.
    done = healthcheck(plain.base_dir / "mirror.toml", "--ready")
    assert done.returncode == 1
    assert done.stdout.strip() == f"http://127.0.0.1:{plain.port}/readyz: 503"


def test_healthcheck_uses_https_when_the_mirror_has_a_certificate(
    tmp_path: Path, ca: CertAuthority
) -> None:
    tls = f'tls_cert = "{ca.server_cert}"\ntls_key = "{ca.server_key}"\n'
    with MirrorServe(tmp_path / "serve", config_text(tmp_path, tls)) as server:
        done = healthcheck(server.base_dir / "mirror.toml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"https://127.0.0.1:{server.port}/healthz: 200"


def test_healthcheck_with_mtls_needs_a_client_certificate(
    tmp_path: Path, ca: CertAuthority
) -> None:
    tls = (
        f'tls_cert = "{ca.server_cert}"\ntls_key = "{ca.server_key}"\n'
        f'tls_client_ca = "{ca.ca_cert}"\n'
    )
    with MirrorServe(tmp_path / "serve", config_text(tmp_path, tls)) as server:
        config = server.base_dir / "mirror.toml"
        without = healthcheck(config)
        with_cert = healthcheck(config, "--cert", str(ca.client_cert), "--key", str(ca.client_key))
    assert without.returncode == 1
    assert f"https://127.0.0.1:{server.port}/healthz" in without.stderr
    assert with_cert.returncode == 0, with_cert.stderr


def test_healthcheck_fails_when_nothing_listens(tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    port = free_port()
    config.write_text(config_text(tmp_path).replace("{port}", str(port)))
    done = healthcheck(config)
    assert done.returncode == 1
    assert done.stderr.startswith(f"mirror healthcheck: http://127.0.0.1:{port}/healthz: ")


def test_healthcheck_on_a_bad_configuration_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text("[server]\nkeepalive_timeout = -1\n")
    done = healthcheck(config)
    assert done.returncode == 2
    assert "configuration error" in done.stderr and "keepalive_timeout" in done.stderr


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("0.0.0.0:5016", ("127.0.0.1", 5016, False)),
        ("[::]:5017", ("::1", 5017, False)),
        ("10.0.0.7:5018", ("10.0.0.7", 5018, False)),
        ("[fd00::7]:5019", ("fd00::7", 5019, False)),
    ],
    ids=["ipv4-wildcard", "ipv6-wildcard", "node-address", "ipv6-address"],
)
def test_a_wildcard_listen_address_is_probed_on_loopback(
    listen: str, expected: tuple[str, int, bool]
) -> None:
    config = load_config(
        overrides={"server": {"listen": listen, "allow_plain_http": True}}, environ={}
    )
    assert target(config) == expected
