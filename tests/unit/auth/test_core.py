"""Pure and small auth parts: JWT signing, secret hashes, token strings, scopes, throttling."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirror.auth.scope import Scope, access_set, parse_scope, parse_scopes
from mirror.auth.throttle import Throttle
from mirror.clock import ManualClock
from mirror.crypto.jwt import TokenInvalid, b64url, decode, encode
from mirror.crypto.secrets import constant_time_equal, hash_secret, verify_secret
from mirror.db.identity.records import format_token, split_token
from mirror.errors import RegistryError

KEY = Ed25519PrivateKey.generate()


def test_jwt_round_trip() -> None:
    claims = {"sub": "acme/alice", "access": [{"type": "repository", "name": "a", "actions": []}]}

    assert decode(encode(claims, KEY), KEY.public_key()) == claims


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param("a.b", "not a compact JWS", id="two-parts"),
        pytest.param("!!.b.c", "bad header", id="header-not-json"),
        pytest.param(b64url(b'{"alg":"none"}') + ".e30.", "unsupported algorithm", id="alg-none"),
        pytest.param(b64url(b'{"alg":"HS256"}') + ".e30.x", "unsupported algorithm", id="hs256"),
        pytest.param("x" * 20000, "token too long", id="too-long"),
    ],
)
def test_jwt_refusals(token: str, reason: str) -> None:
    with pytest.raises(TokenInvalid, match=reason):
        decode(token, KEY.public_key())


def test_secret_hashes_are_salted_and_checked() -> None:
    first, second = hash_secret("s3cret", 2**4), hash_secret("s3cret", 2**4)

    assert first.salt != second.salt and first.digest != second.digest
    assert verify_secret("s3cret", first) and not verify_secret("s3cret!", first)
    assert "s3cret" not in repr(first)
    assert constant_time_equal("a", "a") and not constant_time_equal("a", "b")
    with pytest.raises(ValueError, match="power of two"):
        hash_secret("x", 1000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(format_token("0123456789ab", "s_e-c"), ("0123456789ab", "s_e-c"), id="good"),
        pytest.param("0123456789ab_secret", None, id="no-prefix"),
        pytest.param("mrt_0123_secret", None, id="short-id"),
        pytest.param("mrt_0123456789ab_", None, id="no-secret"),
        pytest.param("mrt_0123456789ab", None, id="no-separator"),
    ],
)
def test_token_strings(text: str, expected: tuple[str, str] | None) -> None:
    assert split_token(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("repository:acme/app:pull", Scope("repository", "acme/app", ("pull",))),
        ("repository:acme/app:pull,push,pull", Scope("repository", "acme/app", ("pull", "push"))),
        ("repository:h:5000/app:pull", Scope("repository", "h:5000/app", ("pull",))),
        ("registry:catalog:*", Scope("registry", "catalog", ("*",))),
        ("registry:catalog:pull", None),
        ("repository:app:fly", None),
        ("repository:app:", None),
        ("repository::pull", None),
        ("garbage", None),
        ("index:app:pull", None),
    ],
)
def test_scopes(text: str, expected: Scope | None) -> None:
    assert parse_scope(text) == expected


def test_scope_lists_and_access_claims() -> None:
    scopes = parse_scopes(["repository:a:pull repository:b:push", "junk"])

    assert [str(s) for s in scopes] == ["repository:a:pull", "repository:b:push"]
    assert access_set([s.claim() for s in scopes] + ["junk", {"type": 1}]) == {
        ("repository", "a", "pull"),
        ("repository", "b", "push"),
    }
    assert access_set("not-a-list") == frozenset()


def test_throttle_locks_out_then_forgives() -> None:
    clock = ManualClock()
    throttle = Throttle(clock, max_failures=3, window=10, lockout=30)
    for _ in range(2):
        throttle.failed("1.2.3.4")
    clock.advance(11)  # the window slid past the first failures
    throttle.failed("1.2.3.4")
    throttle.check("1.2.3.4")
    throttle.failed("1.2.3.4")
    throttle.failed("1.2.3.4")

    with pytest.raises(RegistryError) as raised:
        throttle.check("1.2.3.4")
    assert raised.value.headers == {"Retry-After": "30"}
    throttle.check("5.6.7.8")  # other sources are not affected
    clock.advance(30)
    throttle.check("1.2.3.4")
    throttle.failed("1.2.3.4")
    throttle.succeeded("1.2.3.4")
    assert throttle.failures("1.2.3.4") == 0
