"""The ``[auth]`` configuration section: defaults, the documented example, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.config import AuthConfig, Config, ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "conf" / "mirror.example.toml"


def test_the_example_file_is_the_defaults() -> None:
    assert load_config(EXAMPLE, environ={}) == Config()


def test_auth_is_off_by_default() -> None:
    assert Config().auth == AuthConfig() and not Config().auth.enabled


def test_environment_sets_auth_keys() -> None:
    config = load_config(
        environ={"MIRROR_AUTH_ENABLED": "true", "MIRROR_AUTH_DEFAULT_TENANCY": "nodes"}
    )

    assert config.auth.enabled and config.auth.default_tenancy == "nodes"


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        pytest.param({"hash_cost": 1000}, "auth.hash_cost: must be a power of two", id="cost"),
        pytest.param({"token_ttl": 0}, "auth.token_ttl: must be positive", id="ttl"),
        pytest.param({"lockout": -1}, "auth.lockout: must be positive", id="lockout"),
        pytest.param({"max_failed_logins": 0}, "auth.max_failed_logins", id="failures"),
        pytest.param({"default_tenancy": "Acme.io"}, "auth.default_tenancy", id="tenancy"),
        pytest.param({"enabled": True, "admin_tenancy": ""}, "auth.admin_tenancy", id="admin"),
        pytest.param({"realm": "ftp://x"}, "auth.realm: expected http", id="realm"),
        pytest.param({"enabled": "maybe"}, "auth.enabled: expected true or false", id="bool"),
        pytest.param({"nope": 1}, "auth.nope: unknown key", id="unknown"),
    ],
)
def test_bad_auth_settings_name_the_key(auth: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"auth": auth}, environ={})


TIER = {"backend": "postgres", "dsn": "postgresql://mirror@127.0.0.1:1/mirror"}


def test_a_tier_requires_one_mounted_signing_key() -> None:
    overrides = {"auth": {"enabled": True}, "metadata": TIER}
    with pytest.raises(ConfigError, match=r"^auth\.signing_key: required with"):
        load_config(overrides=overrides, environ={})


def test_a_tier_never_creates_the_signing_key(tmp_path: Path) -> None:
    from mirror.app.auth import signing_key

    missing = tmp_path / "mounted" / "signing-key.pem"
    config = load_config(
        overrides={"auth": {"enabled": True, "signing_key": str(missing)}, "metadata": TIER},
        environ={},
    )
    with pytest.raises(ConfigError, match=r"^auth\.signing_key: cannot read"):
        signing_key(config)
    assert not missing.exists()
    # A single node creates it at first start, as before.
    single = load_config(overrides={"auth": {"signing_key": str(missing)}}, environ={})
    signing_key(single)
    assert missing.exists()
