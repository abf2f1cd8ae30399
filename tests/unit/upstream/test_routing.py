"""Which upstream a request goes to: containerd's ``?ns=``, a host path prefix, or the default."""

from __future__ import annotations

import pytest

from mirror.config import Config
from mirror.config.model import UpstreamConfig, port_free_alias
from mirror.errors import ErrorCode, RegistryError
from mirror.upstream.routing import Route, Router, Target

# The default upstreams (as the app wires them) plus a plain-HTTP registry with a port.
ROUTES = [Route(u.host, u.aliases, u.library_prefix) for u in Config().upstreams] + [
    Route("127.0.0.1:5000")
]


@pytest.fixture
def router() -> Router:
    return Router(ROUTES, "docker.io")


@pytest.fixture
def router_without_default() -> Router:
    return Router(ROUTES, None)


@pytest.mark.parametrize(
    "name, ns, upstream, repo",
    [
        # containerd: ?ns=<registry host>, the name without the host.
        pytest.param("library/alpine", "docker.io", "docker.io", "library/alpine", id="ns"),
        pytest.param("alpine", "docker.io", "docker.io", "library/alpine", id="ns-library-prefix"),
        pytest.param("bitnami/redis", "docker.io", "docker.io", "bitnami/redis", id="ns-org-repo"),
        pytest.param(
            "alpine", "registry-1.docker.io", "docker.io", "library/alpine", id="ns-alias"
        ),
        pytest.param("owner/app", "ghcr.io", "ghcr.io", "owner/app", id="ns-other-upstream"),
        pytest.param("app", "ghcr.io", "ghcr.io", "app", id="ns-no-library-prefix"),
        pytest.param("team/app", "127.0.0.1:5000", "127.0.0.1:5000", "team/app", id="ns-port"),
        # Path prefix: the first component names the registry host.
        pytest.param("docker.io/library/alpine", None, "docker.io", "library/alpine", id="prefix"),
        pytest.param(
            "docker.io/alpine", None, "docker.io", "library/alpine", id="prefix-library-prefix"
        ),
        pytest.param(
            "index.docker.io/alpine", None, "docker.io", "library/alpine", id="prefix-alias"
        ),
        pytest.param("ghcr.io/owner/app", None, "ghcr.io", "owner/app", id="prefix-other"),
        pytest.param("registry.k8s.io/pause", None, "registry.k8s.io", "pause", id="prefix-single"),
        pytest.param(
            "127.0.0.1:5000/team/app", None, "127.0.0.1:5000", "team/app", id="prefix-port"
        ),
        # Bare names go to the default upstream.
        pytest.param("alpine", None, "docker.io", "library/alpine", id="bare"),
        pytest.param("bitnami/redis", None, "docker.io", "bitnami/redis", id="bare-org-repo"),
        pytest.param("a/b/c", None, "docker.io", "a/b/c", id="bare-deep"),
    ],
)
def test_resolve(router: Router, name: str, ns: str | None, upstream: str, repo: str) -> None:
    assert router.resolve(name, ns) == Target(upstream=upstream, repo=repo, name=name)


@pytest.mark.parametrize(
    "name, ns",
    [
        pytest.param("alpine", "gcr.io", id="ns-not-mirrored"),
        pytest.param("team/app", "127.0.0.1:5001", id="ns-other-port"),
        pytest.param("alpine", "", id="ns-empty"),
    ],
)
def test_unknown_ns_is_name_unknown(router: Router, name: str, ns: str) -> None:
    with pytest.raises(RegistryError) as caught:
        router.resolve(name, ns)

    assert caught.value.code is ErrorCode.NAME_UNKNOWN
    assert caught.value.status == 404
    assert caught.value.detail == {"ns": ns}


def test_bare_name_without_default_is_name_unknown(router_without_default: Router) -> None:
    with pytest.raises(RegistryError) as caught:
        router_without_default.resolve("alpine", None)

    assert caught.value.code is ErrorCode.NAME_UNKNOWN
    assert caught.value.detail == {"name": "alpine"}


@pytest.mark.parametrize(
    "name, ns, upstream, repo",
    [
        pytest.param("alpine", "docker.io", "docker.io", "library/alpine", id="ns"),
        pytest.param("ghcr.io/owner/app", None, "ghcr.io", "owner/app", id="prefix"),
    ],
)
def test_explicit_upstream_needs_no_default(
    router_without_default: Router, name: str, ns: str | None, upstream: str, repo: str
) -> None:
    assert router_without_default.resolve(name, ns) == Target(upstream, repo, name)


@pytest.mark.parametrize(
    "name, ns",
    [
        pytest.param("Alpine", "docker.io", id="ns-uppercase"),
        pytest.param("library/../alpine", "docker.io", id="ns-dot-dot"),
        pytest.param("/alpine", "docker.io", id="ns-leading-slash"),
        pytest.param("docker.io/Alpine", None, id="prefix-uppercase"),
        pytest.param("docker.io/", None, id="prefix-empty-repo"),
        pytest.param("docker.io/a..b", None, id="prefix-dot-dot"),
        pytest.param("127.0.0.1:5000/Team/app", None, id="prefix-port-uppercase"),
        pytest.param("example.com:5000/app", None, id="unconfigured-host-with-port"),
        pytest.param("Alpine", None, id="bare-uppercase"),
        pytest.param("alpine/", None, id="bare-trailing-slash"),
        pytest.param("-alpine", None, id="bare-leading-dash"),
        pytest.param("a__", None, id="bare-trailing-underscores"),
        pytest.param("a" * 256, None, id="bare-too-long"),
    ],
)
def test_invalid_name_is_name_invalid(router: Router, name: str, ns: str | None) -> None:
    with pytest.raises(RegistryError) as caught:
        router.resolve(name, ns)

    assert caught.value.code is ErrorCode.NAME_INVALID
    assert caught.value.status == 400


def test_library_prefix_only_for_single_component_names_on_prefixing_upstreams(
    router: Router,
) -> None:
    assert router.resolve("alpine", "docker.io").repo == "library/alpine"
    assert router.resolve("library/alpine", "docker.io").repo == "library/alpine"
    assert router.resolve("a/b/c", "docker.io").repo == "a/b/c"
    assert router.resolve("alpine", "quay.io").repo == "alpine"


@pytest.mark.parametrize(
    "name, ns",
    [
        pytest.param("alpine", "docker.io", id="ns"),
        pytest.param("docker.io/alpine", None, id="prefix"),
        pytest.param("alpine", None, id="bare"),
    ],
)
def test_target_name_is_the_clients_name(router: Router, name: str, ns: str | None) -> None:
    target = router.resolve(name, ns)

    assert target.name == name
    assert target.repo == "library/alpine"


@pytest.mark.parametrize(
    "default, host, expected",
    [
        pytest.param("docker.io", "docker.io", True, id="default"),
        pytest.param("docker.io", "ghcr.io", False, id="other"),
        pytest.param("registry-1.docker.io", "docker.io", True, id="default-given-by-alias"),
        pytest.param(None, "docker.io", False, id="no-default"),
    ],
)
def test_is_default(default: str | None, host: str, expected: bool) -> None:
    assert Router(ROUTES, default).is_default(host) is expected


@pytest.mark.parametrize(
    "host, alias",
    [
        pytest.param("127.0.0.1:5000", "127.0.0.1-5000", id="ip-port"),
        pytest.param("localhost:5000", "localhost-5000", id="localhost-port"),
        pytest.param("registry.example:8443", "registry.example-8443", id="name-port"),
    ],
)
def test_an_upstream_with_a_port_is_reached_by_its_port_free_alias(host: str, alias: str) -> None:
    # podman and skopeo refuse "127.0.0.1:5016/127.0.0.1:5000/team/app" (a port inside the
    # path); the default alias makes it "127.0.0.1:5016/127.0.0.1-5000/team/app".
    upstream = UpstreamConfig(host, "http://upstream.test")
    assert port_free_alias(host) == alias and alias in upstream.aliases
    config = Config(upstreams=(upstream,), default_upstream=host).validate()
    router = Router([Route(u.host, u.aliases) for u in config.upstreams], None)
    assert router.resolve(f"{alias}/team/app", None) == Target(
        host, "team/app", f"{alias}/team/app"
    )
    assert router.resolve("team/app", alias) == Target(host, "team/app", "team/app")


def test_a_host_without_a_port_gets_no_extra_alias() -> None:
    assert port_free_alias("ghcr.io") is None
    assert UpstreamConfig("ghcr.io", "https://ghcr.io").aliases == ()
