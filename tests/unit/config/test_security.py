"""The ``[encryption]`` section and the TLS keys of ``[server]`` and ``[[upstreams]]``."""

from __future__ import annotations

from typing import Any

import pytest

from mirror.app.build import endpoint_of
from mirror.config import Config, ConfigError, UpstreamConfig, load_config


def load(**overrides: Any) -> Config:
    return load_config(overrides=overrides, environ={})


def test_encryption_is_on_by_default_with_a_key_file() -> None:
    enc = Config().encryption

    assert enc.enabled and enc.kek_source == "file" and enc.kek_file == ""  # "<data_dir>.kek"
    assert enc.cipher == "auto" and enc.chunk_size == 1024 * 1024


def test_encryption_keys_come_from_the_environment_too() -> None:
    config = load_config(
        environ={"MIRROR_ENCRYPTION_ENABLED": "false", "MIRROR_ENCRYPTION_CHUNK_SIZE": "65536"}
    )

    assert config.encryption.enabled is False
    assert config.encryption.chunk_size == 65536


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"encryption": {"kek_source": "vault"}}, "encryption.kek_source", id="source"),
        pytest.param(
            {"encryption": {"kek_source": "command"}}, "encryption.kek_command", id="no-command"
        ),
        pytest.param({"encryption": {"cipher": "rot13"}}, "encryption.cipher", id="cipher"),
        pytest.param({"encryption": {"chunk_size": 100}}, "encryption.chunk_size", id="small"),
        pytest.param(
            {"encryption": {"kek_command_refresh": -1}}, "kek_command_refresh", id="refresh"
        ),
        pytest.param({"server": {"tls_cert": "c.pem"}}, "server.tls_cert: set both", id="half"),
        pytest.param(
            {"server": {"tls_client_ca": "ca.pem"}}, "server.tls_client_ca", id="mtls-no-cert"
        ),
        pytest.param(
            {"server": {"listen": "0.0.0.0:5016"}}, "server.tls_cert: required", id="plain-wide"
        ),
        pytest.param(
            {"server": {"listen": "10.0.0.5:5016"}}, "allow_plain_http", id="plain-node-address"
        ),
    ],
)
def test_bad_security_settings_name_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(**overrides)


@pytest.mark.parametrize(
    "server",
    [
        pytest.param({"listen": "127.0.0.1:5016"}, id="loopback"),
        pytest.param({"listen": "localhost:5016"}, id="localhost"),
        pytest.param({"listen": "[::1]:5016"}, id="ipv6-loopback"),
        pytest.param({"listen": "10.0.0.5:5016", "allow_plain_http": True}, id="node-local"),
        pytest.param(
            {"listen": "0.0.0.0:5016", "tls_cert": "c.pem", "tls_key": "k.pem"}, id="https"
        ),
        pytest.param(
            {
                "listen": "0.0.0.0:5016",
                "tls_cert": "c.pem",
                "tls_key": "k.pem",
                "tls_client_ca": "ca.pem",
            },
            id="mtls",
        ),
    ],
)
def test_allowed_listeners(server: dict[str, Any]) -> None:
    assert load(server=server).server.listen == server["listen"]


def test_upstream_ca_bundle_reaches_the_client() -> None:
    upstream = UpstreamConfig(host="r.test", url="https://r.test", ca_file="/etc/ca.pem")

    endpoint = endpoint_of(upstream)

    assert endpoint.ca_file == "/etc/ca.pem" and endpoint.verify_tls is True
    assert (
        endpoint_of(UpstreamConfig(host="r", url="https://r", verify_tls=False)).verify_tls is False
    )


def test_the_example_configuration_is_the_defaults() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "conf" / "mirror.example.toml"

    assert load_config(example, environ={}) == Config()
