"""Digests (image-spec "Digests") and the repository name and tag grammar (distribution-spec)."""

from __future__ import annotations

import hashlib

import pytest

from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest, is_digest
from mirror.oci.names import MAX_NAME_LENGTH, is_host, validate_name, validate_tag

HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2
EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# Digest ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, algorithm, encoded",
    [
        pytest.param(f"sha256:{HEX64}", "sha256", HEX64, id="sha256"),
        pytest.param(f"sha512:{HEX128}", "sha512", HEX128, id="sha512"),
        pytest.param(EMPTY_SHA256, "sha256", EMPTY_SHA256[7:], id="sha256-of-empty"),
    ],
)
def test_valid_digest_parses_into_algorithm_and_encoded(
    text: str, algorithm: str, encoded: str
) -> None:
    digest = Digest.parse(text)

    assert (digest.algorithm, digest.encoded) == (algorithm, encoded)
    assert str(digest) == text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(HEX64, id="no-algorithm"),
        pytest.param("sha256", id="algorithm-only"),
        pytest.param("sha256:", id="empty-encoded"),
        pytest.param(f":{HEX64}", id="empty-algorithm"),
        pytest.param(f"md5:{HEX64[:32]}", id="unsupported-algorithm"),
        pytest.param(f"SHA256:{HEX64}", id="uppercase-algorithm"),
        pytest.param(f"sha256:{HEX64.upper()}", id="uppercase-hex"),
        pytest.param(f"sha256:{HEX64[:-1]}", id="63-hex-chars"),
        pytest.param(f"sha256:{HEX64}0", id="65-hex-chars"),
        pytest.param(f"sha256:{HEX128}", id="sha256-with-sha512-length"),
        pytest.param(f"sha512:{HEX64}", id="sha512-with-sha256-length"),
        pytest.param(f"sha256:{HEX64[:-1]}g", id="non-hex-char"),
        pytest.param(f"sha256:{HEX64}:{HEX64}", id="two-colons"),
        pytest.param(f" sha256:{HEX64}", id="leading-space"),
        pytest.param(f"sha256:{HEX64} ", id="trailing-space"),
        pytest.param(f"sha256:../../{HEX64[6:]}", id="path-traversal"),
        pytest.param(f"sha256:{HEX64}\n", id="trailing-newline"),
    ],
)
def test_malformed_digest_is_digest_invalid(text: str) -> None:
    with pytest.raises(RegistryError) as caught:
        Digest.parse(text)

    assert caught.value.code is ErrorCode.DIGEST_INVALID
    assert caught.value.status == 400
    assert caught.value.detail == {"digest": text}


@pytest.mark.parametrize(
    "data, algorithm",
    [
        pytest.param(b"", "sha256", id="empty-sha256"),
        pytest.param(b"hello world", "sha256", id="text-sha256"),
        pytest.param(bytes(range(256)) * 10, "sha256", id="binary-sha256"),
        pytest.param(b"hello world", "sha512", id="text-sha512"),
    ],
)
def test_of_hashes_data_and_round_trips_through_str(data: bytes, algorithm: str) -> None:
    digest = Digest.of(data, algorithm)

    assert digest.algorithm == algorithm
    assert digest.encoded == hashlib.new(algorithm, data).hexdigest()
    assert Digest.parse(str(digest)) == digest


def test_of_empty_content_is_the_well_known_empty_digest() -> None:
    assert str(Digest.of(b"")) == EMPTY_SHA256


def test_hasher_is_fresh_and_of_the_digests_algorithm() -> None:
    digest = Digest.of(b"abc", "sha512")
    hasher = digest.hasher()
    hasher.update(b"abc")

    assert hasher.name == "sha512"
    assert hasher.hexdigest() == digest.encoded
    assert digest.hasher().hexdigest() == hashlib.sha512().hexdigest()


def test_digests_are_values() -> None:
    assert Digest.parse(f"sha256:{HEX64}") == Digest("sha256", HEX64)
    assert len({Digest.parse(f"sha256:{HEX64}"), Digest("sha256", HEX64)}) == 1


@pytest.mark.parametrize(
    "reference, expected",
    [
        pytest.param(f"sha256:{HEX64}", True, id="digest"),
        pytest.param("latest", False, id="tag"),
        pytest.param("v1.2.3", False, id="dotted-tag"),
    ],
)
def test_is_digest_tells_digest_references_from_tags(reference: str, expected: bool) -> None:
    assert is_digest(reference) is expected


# Repository names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("alpine", id="single-component"),
        pytest.param("library/alpine", id="two-components"),
        pytest.param("a/b/c/d", id="many-components"),
        pytest.param("0", id="single-digit"),
        pytest.param("my.app", id="period"),
        pytest.param("my_app", id="underscore"),
        pytest.param("my__app", id="double-underscore"),
        pytest.param("my-app", id="dash"),
        pytest.param("my---app", id="dashes"),
        pytest.param("a.b_c__d-e", id="all-separators"),
        pytest.param("a" * MAX_NAME_LENGTH, id="255-chars"),
        pytest.param("ab/" * 84 + "abc", id="255-chars-many-components"),
    ],
)
def test_valid_name_is_returned(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("Alpine", id="uppercase"),
        pytest.param("library/Alpine", id="uppercase-in-second-component"),
        pytest.param("a..b", id="double-period"),
        pytest.param("a___b", id="triple-underscore"),
        pytest.param("a._b", id="mixed-separators"),
        pytest.param(".alpine", id="leading-period"),
        pytest.param("alpine.", id="trailing-period"),
        pytest.param("-alpine", id="leading-dash"),
        pytest.param("alpine-", id="trailing-dash"),
        pytest.param("_alpine", id="leading-underscore"),
        pytest.param("alpine_", id="trailing-underscore"),
        pytest.param("/alpine", id="leading-slash"),
        pytest.param("alpine/", id="trailing-slash"),
        pytest.param("library//alpine", id="empty-component"),
        pytest.param("library/-alpine", id="component-with-leading-dash"),
        pytest.param("../alpine", id="dot-dot-component"),
        pytest.param("my app", id="space"),
        pytest.param("alpine:3.19", id="colon"),
        pytest.param("alpine@sha256", id="at-sign"),
        pytest.param("a" * (MAX_NAME_LENGTH + 1), id="256-chars"),
        pytest.param("alpine\n", id="trailing-newline"),
    ],
)
def test_invalid_name_is_name_invalid(name: str) -> None:
    with pytest.raises(RegistryError) as caught:
        validate_name(name)

    assert caught.value.code is ErrorCode.NAME_INVALID
    assert caught.value.detail == {"name": name}


# Tags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("latest", id="word"),
        pytest.param("v1.2.3", id="version"),
        pytest.param("3.19-rc_1", id="all-punctuation"),
        pytest.param("_private", id="leading-underscore"),
        pytest.param("MixedCase", id="uppercase"),
        pytest.param("0", id="single-digit"),
        pytest.param("a" * 128, id="128-chars"),
    ],
)
def test_valid_tag_is_returned(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 129, id="129-chars"),
        pytest.param(".hidden", id="leading-period"),
        pytest.param("-rc", id="leading-dash"),
        pytest.param("a/b", id="slash"),
        pytest.param("a:b", id="colon"),
        pytest.param("1.0+build", id="plus"),
        pytest.param("my tag", id="space"),
        pytest.param("latest\n", id="trailing-newline"),
    ],
)
def test_invalid_tag_is_tag_invalid(tag: str) -> None:
    with pytest.raises(RegistryError) as caught:
        validate_tag(tag)

    assert caught.value.code is ErrorCode.TAG_INVALID
    assert caught.value.detail == {"tag": tag}


# Hosts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("docker.io", True, id="domain"),
        pytest.param("registry-1.docker.io", True, id="subdomain-with-dash"),
        pytest.param("localhost", True, id="localhost"),
        pytest.param("localhost:5000", True, id="localhost-with-port"),
        pytest.param("127.0.0.1:5000", True, id="ip-with-port"),
        pytest.param("ghcr.io:443", True, id="domain-with-port"),
        pytest.param("Registry.Example.COM", True, id="uppercase-domain"),
        pytest.param("registry:5000", True, id="dotless-with-port"),
        pytest.param("library", False, id="dotless-word-is-a-repo-component"),
        pytest.param("alpine", False, id="image-name"),
        pytest.param("", False, id="empty"),
        pytest.param("-docker.io", False, id="leading-dash"),
        pytest.param("docker.io-", False, id="trailing-dash"),
        pytest.param(".docker.io", False, id="leading-period"),
        pytest.param("docker_io.com", False, id="underscore"),
        pytest.param("docker.io:", False, id="empty-port"),
        pytest.param("docker.io:123456", False, id="six-digit-port"),
        pytest.param("docker.io:http", False, id="named-port"),
        pytest.param("docker.io/library", False, id="with-path"),
        pytest.param("user@docker.io", False, id="with-userinfo"),
        pytest.param("docker.io\n", False, id="trailing-newline"),
    ],
)
def test_is_host(text: str, expected: bool) -> None:
    assert is_host(text) is expected
