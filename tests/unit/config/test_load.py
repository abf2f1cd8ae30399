"""Configuration: defaults in code < TOML file < ``MIRROR_*`` environment < overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mirror.config import Config, ConfigError, PolicyConfig, UpstreamConfig, load_config


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mirror.toml"
    path.write_text(text)
    return path


# Defaults -------------------------------------------------------------------------------------


def test_defaults_are_valid() -> None:
    config = load_config(environ={})

    assert config == Config()
    assert config.validate() is config
    assert config.server.listen == "127.0.0.1:5016"
    assert config.default_upstream == "docker.io"
    assert [u.host for u in config.upstreams] == [
        "docker.io",
        "ghcr.io",
        "quay.io",
        "registry.k8s.io",
    ]


def test_default_docker_hub_upstream_prefixes_library_and_has_aliases() -> None:
    docker = Config().upstream("docker.io")

    assert docker is not None
    assert docker.url == "https://registry-1.docker.io"
    assert docker.library_prefix is True
    assert set(docker.aliases) == {"registry-1.docker.io", "index.docker.io"}
    assert [u.host for u in Config().upstreams if u.library_prefix] == ["docker.io"]


@pytest.mark.parametrize(
    "host, expected",
    [
        pytest.param("docker.io", "docker.io", id="host"),
        pytest.param("registry-1.docker.io", "docker.io", id="alias"),
        pytest.param("quay.io", "quay.io", id="other-host"),
        pytest.param("example.com", None, id="not-configured"),
    ],
)
def test_upstream_lookup_by_host_or_alias(host: str, expected: str | None) -> None:
    upstream = Config().upstream(host)

    assert (upstream.host if upstream else None) == expected


def test_config_is_frozen() -> None:
    config = Config()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.listen = "0.0.0.0:80"  # type: ignore[misc]


# Sources and precedence -----------------------------------------------------------------------


def test_toml_file_sets_sections_and_replaces_upstreams(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        default_upstream = "registry.example.com"

        [server]
        listen = "0.0.0.0:8080"
        access_log = false
        allow_plain_http = true

        [storage]
        data_dir = "/var/cache/mirror"
        chunk_size = 65536

        [cache]
        tag_ttl = 30

        [[upstreams]]
        host = "registry.example.com"
        url = "https://registry.example.com"
        aliases = ["mirror.example.com"]
        username = "robot"
        password = "secret"
        retries = 5

        [[upstreams]]
        host = "127.0.0.1:5000"
        url = "http://127.0.0.1:5000"

        [[upstreams]]
        host = "ghcr.io"
        url = "https://regional.example:5016"
        forward_ns = true
        """,
    )

    config = load_config(path, environ={})

    assert config.server.listen == "0.0.0.0:8080"
    assert config.server.access_log is False
    assert config.storage.data_dir == "/var/cache/mirror"
    assert config.storage.chunk_size == 65536
    assert config.cache.tag_ttl == 30.0
    assert config.cache.max_stale == Config().cache.max_stale
    assert config.default_upstream == "registry.example.com"
    assert config.upstreams == (
        UpstreamConfig(
            host="registry.example.com",
            url="https://registry.example.com",
            aliases=("mirror.example.com",),
            username="robot",
            password="secret",
            retries=5,
        ),
        UpstreamConfig(host="127.0.0.1:5000", url="http://127.0.0.1:5000"),
        UpstreamConfig(host="ghcr.io", url="https://regional.example:5016", forward_ns=True),
    )


@pytest.mark.parametrize(
    "environ, section, key, expected",
    [
        pytest.param({"MIRROR_CACHE_TAG_TTL": "5"}, "cache", "tag_ttl", 5.0, id="cache-tag-ttl"),
        pytest.param(
            {"MIRROR_SERVER_LISTEN": "127.0.0.1:9000"},
            "server",
            "listen",
            "127.0.0.1:9000",
            id="server-listen",
        ),
        pytest.param(
            {"MIRROR_SERVER_ACCESS_LOG": "off"}, "server", "access_log", False, id="bool-off"
        ),
        pytest.param(
            {"MIRROR_STORAGE_CHUNK_SIZE": "8192"}, "storage", "chunk_size", 8192, id="int"
        ),
    ],
)
def test_environment_overrides(
    environ: dict[str, str], section: str, key: str, expected: object
) -> None:
    config = load_config(environ=environ)

    assert getattr(getattr(config, section), key) == expected


def test_environment_selects_default_upstream() -> None:
    assert load_config(environ={"MIRROR_DEFAULT_UPSTREAM": "ghcr.io"}).default_upstream == (
        "ghcr.io"
    )


def test_unrelated_environment_is_ignored() -> None:
    assert load_config(environ={"NOT_MIRROR_KEY": "x", "PATH": "/bin"}) == Config()


def test_precedence_is_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        [server]
        listen = "127.0.0.1:1111"
        [cache]
        tag_ttl = 10
        max_stale = 20
        fill_timeout = 30
        """,
    )
    environ = {"MIRROR_CACHE_MAX_STALE": "200", "MIRROR_CACHE_FILL_TIMEOUT": "300"}
    overrides = {"cache": {"fill_timeout": 3000}}

    config = load_config(path, environ=environ, overrides=overrides)

    assert config.server.listen == "127.0.0.1:1111"  # file only
    assert config.cache.tag_ttl == 10.0  # file only
    assert config.cache.max_stale == 200.0  # environment beats file
    assert config.cache.fill_timeout == 3000.0  # overrides beat environment
    assert config.cache.last_pull_flush_interval == Config().cache.last_pull_flush_interval


# Errors name the key --------------------------------------------------------------------------


UPSTREAM = '[[upstreams]]\nhost = "{host}"\nurl = "{url}"\n'
MISSING = object()  # the path names a file that does not exist


@pytest.mark.parametrize(
    "toml_text, environ, message",
    [
        pytest.param(
            '[server]\nlissen = "127.0.0.1:1"', {}, "server.lissen: unknown key", id="unknown-key"
        ),
        pytest.param('colour = "blue"', {}, "colour: unknown key", id="unknown-top-level-key"),
        pytest.param(
            'server = "127.0.0.1:1"', {}, "server: expected a table", id="section-not-a-table"
        ),
        pytest.param(
            '[server]\nlisten = "localhost"',
            {},
            "server.listen: expected HOST:PORT",
            id="listen-without-port",
        ),
        pytest.param(
            None,
            {"MIRROR_SERVER_LISTEN": "127.0.0.1:99999"},
            "server.listen: expected HOST:PORT",
            id="listen-port-out-of-range",
        ),
        pytest.param(
            None,
            {"MIRROR_SERVER_LISTEN": ":5016"},
            "server.listen: expected HOST:PORT",
            id="listen-without-host",
        ),
        pytest.param(
            None,
            {"MIRROR_CACHE_TAG_TTL": "soon"},
            "cache.tag_ttl: expected a number",
            id="bad-number-from-env",
        ),
        pytest.param(
            '[cache]\ntag_ttl = "soon"',
            {},
            "cache.tag_ttl: expected a number",
            id="bad-number-from-file",
        ),
        pytest.param(
            "[storage]\nchunk_size = true",
            {},
            "storage.chunk_size: expected a number",
            id="bool-is-not-a-number",
        ),
        pytest.param(
            None,
            {"MIRROR_SERVER_ACCESS_LOG": "maybe"},
            "server.access_log: expected true or false",
            id="bad-bool",
        ),
        pytest.param(
            None,
            {"MIRROR_CACHE_TAG_TTL": "-1"},
            "cache.tag_ttl: must not be negative",
            id="negative-duration",
        ),
        pytest.param(
            None,
            {"MIRROR_STORAGE_CHUNK_SIZE": "16"},
            "storage.chunk_size: must be at least 4096",
            id="tiny-chunks",
        ),
        pytest.param(
            UPSTREAM.format(host="docker.io", url="ftp://registry-1.docker.io"),
            {},
            "upstreams[0].url: expected http(s)://",
            id="upstream-url-not-http",
        ),
        pytest.param(
            UPSTREAM.format(host="docker.io", url="https://a.example")
            + UPSTREAM.format(host="docker.io", url="https://b.example"),
            {},
            "upstreams[1].host: 'docker.io' configured twice",
            id="duplicated-host",
        ),
        pytest.param(
            UPSTREAM.format(host="docker.io", url="https://a.example")
            + UPSTREAM.format(host="ghcr.io", url="https://b.example")
            + 'aliases = ["docker.io"]\n',
            {},
            "upstreams[1].host: 'docker.io' configured twice",
            id="alias-duplicates-a-host",
        ),
        pytest.param(
            UPSTREAM.format(host="docker.io", url="https://a.example") + "max_connections = -1\n",
            {},
            "upstreams[0].max_connections: must not be negative",
            id="negative-connection-cap",
        ),
        pytest.param(
            UPSTREAM.format(host="docker.io", url="https://a.example") + "bandwidth = -5\n",
            {},
            "upstreams[0].bandwidth: must not be negative",
            id="negative-bandwidth",
        ),
        pytest.param(
            UPSTREAM.format(host="not a host", url="https://a.example"),
            {},
            "upstreams[0].host: not a registry host",
            id="upstream-host-malformed",
        ),
        pytest.param(
            '[[upstreams]]\nurl = "https://a.example"',
            {},
            "upstreams[0].host: required",
            id="upstream-host-missing",
        ),
        pytest.param(
            UPSTREAM.format(host="docker.io", url="https://regional.example")
            + 'forward_ns = "sometimes"\n',
            {},
            "upstreams[0].forward_ns: expected true or false",
            id="forward-ns-not-a-bool",
        ),
        pytest.param(
            "upstreams = [1]", {}, "upstreams[0]: expected a table", id="upstream-not-a-table"
        ),
        pytest.param(
            'default_upstream = "gcr.io"',
            {},
            "default_upstream: 'gcr.io' is not a configured upstream",
            id="default-upstream-not-configured",
        ),
        pytest.param(
            None,
            {"MIRROR_DEFAULT_UPSTREAM": "gcr.io"},
            "default_upstream: 'gcr.io' is not a configured upstream",
            id="default-upstream-not-configured-from-env",
        ),
        pytest.param(
            "[storage]\nchunk_size = 65536.5",
            {},
            "storage.chunk_size: expected a whole number",
            id="fraction-for-an-integer",
        ),
        pytest.param(
            None,
            {"MIRROR_CACHE_TAG_TTL": "nan"},
            "cache.tag_ttl: expected a finite number",
            id="nan-duration",
        ),
        pytest.param(
            None,
            {"MIRROR_CACHE_FILL_TIMEOUT": "inf"},
            "cache.fill_timeout: expected a finite number",
            id="infinite-duration",
        ),
        pytest.param(MISSING, {}, "config file not found: {path}", id="missing-file"),
        pytest.param("[server\nlisten = 1", {}, "{path}: invalid TOML", id="invalid-toml"),
    ],
)
def test_error_message_starts_with_the_key(
    tmp_path: Path, toml_text: object, environ: dict[str, str], message: str
) -> None:
    path: Path | None = None
    if toml_text is MISSING:
        path = tmp_path / "absent.toml"
    elif isinstance(toml_text, str):
        path = write_toml(tmp_path, toml_text)

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)

    assert str(caught.value).startswith(message.format(path=path))


def test_empty_default_upstream_means_none() -> None:
    config = load_config(environ={"MIRROR_DEFAULT_UPSTREAM": ""})

    assert config.default_upstream == ""


def test_example_file_states_the_defaults() -> None:
    example = Path(__file__).resolve().parents[3] / "conf" / "mirror.example.toml"

    assert load_config(example, environ={}) == Config()


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        pytest.param({"interval": -1}, "retention.interval", id="negative-interval"),
        pytest.param({"max_size": -5}, "retention.max_size", id="negative-size"),
        pytest.param(
            {"low_watermark": 0.95, "high_watermark": 0.9},
            "retention.low_watermark",
            id="low-above-high",
        ),
        pytest.param({"high_watermark": 1.5}, "retention.low_watermark", id="high-above-one"),
        pytest.param({"audit_keep_days": -1}, "retention.audit_keep_days", id="negative-keep"),
        pytest.param(
            {"audit_keep_days": float("inf")}, "retention.audit_keep_days", id="infinite-keep"
        ),
        pytest.param({"audit_keep_days": float("nan")}, "retention.audit_keep_days", id="nan-keep"),
        pytest.param({"policies": {"name": "x"}}, "retention.policies", id="not-an-array"),
        pytest.param({"policies": [{}]}, "retention.policies[0].name: required", id="no-name"),
        pytest.param(
            {"policies": [{"name": "a"}, {"name": "a"}]},
            "retention.policies[1].name",
            id="duplicate",
        ),
        pytest.param(
            {"policies": [{"name": "a", "not_pulled_days": -1}]},
            "retention.policies[0].not_pulled_days",
            id="negative-days",
        ),
        pytest.param(
            {"policies": [{"name": "a", "match": "some"}]},
            "retention.policies[0].match",
            id="bad-match",
        ),
        pytest.param(
            {"policies": [{"name": "global", "repositories": ["a/b"]}]},
            "retention.policies[0].repositories",
            id="global-with-repositories",
        ),
        pytest.param(
            {"policies": [{"name": "a", "colour": "red"}]},
            "retention.policies[0].colour: unknown key",
            id="unknown-key",
        ),
    ],
)
def test_bad_retention_settings_name_the_key(retention: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"retention": retention}, environ={})

    assert message in str(caught.value)


def test_retention_policies_from_toml_and_size_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "mirror.toml"
    path.write_text(
        """
        [retention]
        cooling_period = 0

        [[retention.policies]]
        name = "stale"
        not_pulled_days = 30
        exempt_tags = ["latest", "v*"]
        repositories = ["docker.io/library/alpine"]
        """
    )

    config = load_config(path, environ={"MIRROR_RETENTION_MAX_SIZE": "1000000"})

    assert config.retention.cooling_period == 0
    assert config.retention.max_size == 1_000_000
    assert config.retention.policies == (
        PolicyConfig(
            name="stale",
            not_pulled_days=30.0,
            exempt_tags=("latest", "v*"),
            repositories=("docker.io/library/alpine",),
        ),
    )


@pytest.mark.parametrize("key", ["tenancy_max_bytes", "tenancy_max_repositories"])
@pytest.mark.parametrize("value", [-1, 1.5, True, "10GiB"])
def test_hosted_quotas_must_be_whole_numbers(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"hosted\.{key}"):
        load_config(overrides={"hosted": {key: value}}, environ={})


def test_hosted_quotas_default_to_unlimited() -> None:
    hosted = load_config(overrides={}, environ={}).hosted
    assert (hosted.tenancy_max_bytes, hosted.tenancy_max_repositories) == (0, 0)
    set_ = load_config(overrides={"hosted": {"tenancy_max_bytes": 10}}, environ={}).hosted
    assert set_.tenancy_max_bytes == 10


def test_audit_events_are_kept_400_days_unless_configured() -> None:
    assert Config().retention.audit_keep_days == 400
    config = load_config(environ={"MIRROR_RETENTION_AUDIT_KEEP_DAYS": "0"})
    assert config.retention.audit_keep_days == 0  # for ever
