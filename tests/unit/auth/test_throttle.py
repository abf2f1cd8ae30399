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


def test_failing_from_many_other_addresses_does_not_reset_a_guessing_address() -> None:
    """Past the bound, the least recently failed address is forgotten, not every count."""
    clock = ManualClock()
    throttle = Throttle(clock, max_failures=3, window=600, lockout=30)
    throttle.failed(ADDRESS)
    for i in range(99_999):
        throttle.failed(f"spray-{i}")
    throttle.failed(ADDRESS)  # still guessing: kept however many others fail
    throttle.failed("spray-more")
    throttle.failed("spray-last")
    throttle.failed(ADDRESS)

    with pytest.raises(RegistryError) as refused:
        throttle.check(ADDRESS)
    assert refused.value.code is ErrorCode.TOOMANYREQUESTS


def test_lockouts_are_bounded_and_the_soonest_to_expire_goes_first() -> None:
    clock = ManualClock()
    throttle = Throttle(clock, max_failures=1, window=60, lockout=30, max_sources=2)
    for source in ("first", "second", "third"):
        throttle.failed(source)
        clock.advance(1)
    throttle.check("first")  # dropped to keep the bound
    for source in ("second", "third"):
        with pytest.raises(RegistryError):
            throttle.check(source)


def test_many_other_logins_do_not_forget_a_login_in_use(
    store: IdentityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Remembered logins are an LRU: past the bound the least recently used one goes, not all."""
    import mirror.auth.login as login_module
    from mirror.crypto.secrets import SecretHash, verify_secret

    checked: list[str] = []

    def counting_verify(secret: str, stored: SecretHash) -> bool:
        checked.append(secret)
        return verify_secret(secret, stored)

    monkeypatch.setattr(login_module, "verify_secret", counting_verify)
    clock = ManualClock()
    throttle = Throttle(clock, max_failures=10, window=60, lockout=30)
    login = Login(store, throttle, clock, hash_cost=2, remember_limit=3)
    _, own = store.create_token("acme", "victim", "own", 0, cost=2)
    others = []
    for i in range(4):
        store.create_user("acme", f"user{i}", 0)
        others.append((f"acme/user{i}", store.create_token("acme", f"user{i}", "t", 0, cost=2)[1]))
    login.check("acme/victim", own, ADDRESS)
    for name, token in others:
        login.check(name, token, ADDRESS)
        login.check("acme/victim", own, ADDRESS)  # in use: remembered throughout
    assert len(checked) == 1 + len(others)
