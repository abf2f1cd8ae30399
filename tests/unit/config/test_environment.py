"""``MIRROR_*`` variables: every one is a configuration key or a declared other variable."""

from __future__ import annotations

import pytest

from mirror.config import Config, ConfigError, load_config


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("MIRROR_AUTH_ENABLE", "MIRROR_AUTH_ENABLED"),
        ("MIRROR_LISTEN", "MIRROR_SERVER_LISTEN"),
        ("MIRROR_DATA_DIR", "MIRROR_STORAGE_DATA_DIR"),
        ("MIRROR_CACHE_TAGTTL", "MIRROR_CACHE_TAG_TTL"),
    ],
)
def test_an_unknown_mirror_variable_is_refused_with_the_closest_key(
    name: str, suggestion: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={name: "true"})

    assert name in str(caught.value)
    assert f"did you mean {suggestion}?" in str(caught.value)


@pytest.mark.parametrize("name", ["MIRROR_RETENTION_POLICIES", "MIRROR_UPSTREAMS", "MIRROR_X"])
def test_tables_and_strangers_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(environ={name: "x"})


def test_the_declared_other_variables_are_not_keys_and_pass() -> None:
    environ = {
        "MIRROR_URL": "http://127.0.0.1:5016",
        "MIRROR_USER": "admin/admin",
        "MIRROR_TOKEN": "mrt_x",
        "MIRROR_KEKS": "k:AAAA",
    }

    assert load_config(environ=environ) == Config()


def test_the_configured_keyring_variable_passes() -> None:
    by_flag = load_config(
        overrides={"encryption": {"kek_env": "MIRROR_NODE_KEKS"}},
        environ={"MIRROR_NODE_KEKS": "k:AAAA"},
    )
    by_env = load_config(
        environ={"MIRROR_ENCRYPTION_KEK_ENV": "MIRROR_NODE_KEKS", "MIRROR_NODE_KEKS": "k:AAAA"}
    )

    assert by_flag.encryption.kek_env == by_env.encryption.kek_env == "MIRROR_NODE_KEKS"


def test_known_keys_still_apply() -> None:
    config = load_config(environ={"MIRROR_AUTH_ENABLED": "true", "MIRROR_DEFAULT_UPSTREAM": ""})

    assert config.auth.enabled
    assert config.default_upstream == ""


@pytest.mark.parametrize(
    ("server", "auth", "access"),
    [
        ({}, False, "anonymous"),
        ({}, True, "admin"),
        ({"metrics": "anonymous"}, True, "anonymous"),
        ({"metrics": "off"}, False, "off"),
        ({"metrics": "admin"}, True, "admin"),
    ],
)
def test_metrics_access(server: dict[str, str], auth: bool, access: str) -> None:
    config = load_config(overrides={"server": server, "auth": {"enabled": auth}}, environ={})

    assert config.metrics_access() == access


@pytest.mark.parametrize(
    ("server", "auth"), [({"metrics": "admin"}, False), ({"metrics": "public"}, True)]
)
def test_metrics_access_refusals(server: dict[str, str], auth: bool) -> None:
    with pytest.raises(ConfigError, match=r"server\.metrics"):
        load_config(overrides={"server": server, "auth": {"enabled": auth}}, environ={})
