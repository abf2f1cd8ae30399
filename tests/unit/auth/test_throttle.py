"""Failed logins are counted per address and user: a good login forgives only its own user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.auth.login import Login, LoginFailed
from mirror.auth.throttle import Throttle
from mirror.clock import ManualClock
from mirror.db.identity.store import IdentityStore
from mirror.errors import ErrorCode, RegistryError

ADDRESS = "192.0.2.7"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IdentityStore]:
    """An identity store with tenancy ``acme`` and users ``mallory`` and ``victim``."""
    store = IdentityStore(tmp_path / "identity")
    store.create_tenancy("acme", 0)
    store.create_user("acme", "mallory", 0)
    store.create_user("acme", "victim", 0)
    yield store
    store.close()


def test_a_good_login_does_not_forgive_guesses_at_another_user(store: IdentityStore) -> None:
    clock = ManualClock()
    login = Login(store, Throttle(clock, max_failures=3, window=60, lockout=30), clock, hash_cost=2)
    _, own = store.create_token("acme", "mallory", "own", 0, cost=2)
    for _ in range(2):
        with pytest.raises(LoginFailed):
            login.check("acme/victim", "mrt_guess_wrong", ADDRESS)
    login.check("acme/mallory", own, ADDRESS)  # the attacker's own, valid account
    with pytest.raises(LoginFailed):
        login.check("acme/victim", "mrt_guess_wrong", ADDRESS)

    with pytest.raises(RegistryError) as refused:
        login.check("acme/victim", "mrt_guess_right", ADDRESS)
    assert refused.value.code is ErrorCode.TOOMANYREQUESTS


def test_a_good_login_forgives_its_own_users_failures_only() -> None:
    clock = ManualClock()
    throttle = Throttle(clock, max_failures=5, window=60, lockout=30)
    throttle.failed(ADDRESS, "acme/alice")
    throttle.failed(ADDRESS, "acme/alice")
    throttle.failed(ADDRESS, "acme/bob")

    throttle.succeeded(ADDRESS, "acme/alice")

    assert throttle.failures(ADDRESS, "acme/alice") == 0
    assert throttle.failures(ADDRESS, "acme/bob") == 1
    assert throttle.failures(ADDRESS) == 1


def test_failures_of_every_user_add_up_to_the_lockout() -> None:
    clock = ManualClock()
    throttle = Throttle(clock, max_failures=3, window=60, lockout=30)
    for user in ("acme/a", "acme/b", "acme/c"):
        throttle.failed(ADDRESS, user)

    with pytest.raises(RegistryError):
        throttle.check(ADDRESS)
    throttle.check("198.51.100.1")
    clock.advance(30)
    throttle.check(ADDRESS)
    assert throttle.failures(ADDRESS) == 0


def test_the_window_ages_each_users_failures() -> None:
    clock = ManualClock()
    throttle = Throttle(clock, max_failures=3, window=10, lockout=30)
    throttle.failed(ADDRESS, "acme/a")
    throttle.failed(ADDRESS, "acme/b")
    clock.advance(11)
    throttle.failed(ADDRESS, "acme/c")

    throttle.check(ADDRESS)
    assert throttle.failures(ADDRESS) == 1
