from pathlib import Path

from mirror.clock import ManualClock
from mirror.console.session import SessionStore, session_key


def test_a_session_lives_for_its_lifetime_and_no_longer(tmp_path: Path) -> None:
    clock = ManualClock()
    store = SessionStore(tmp_path, clock, lifetime=60)
    session = store.open("acme", "boss", "tok1")
    clock.advance(59)
    assert store.get(session.id) == session
    clock.advance(1)
    assert store.get(session.id) is None and len(store) == 0


def test_signing_out_ends_the_session(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, ManualClock(), lifetime=60)
    session = store.open("acme", "boss", "tok1")
    store.close(session.id)
    assert store.get(session.id) is None


def test_ids_and_csrf_tokens_are_unguessable_and_distinct(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, ManualClock(), lifetime=60)
    a, b = store.open("acme", "boss", "t"), store.open("acme", "boss", "t")
    assert a.id != b.id and a.csrf != b.csrf and a.id != a.csrf
    assert len(a.id) >= 40 and store.get("") is None and store.get("guess") is None


def test_the_soonest_to_expire_is_dropped_past_the_bound(tmp_path: Path) -> None:
    clock = ManualClock()
    store = SessionStore(tmp_path, clock, lifetime=60, max_sessions=2)
    first = store.open("a", "u", "t")
    clock.advance(1)
    second = store.open("a", "u", "t")
    clock.advance(1)
    third = store.open("a", "u", "t")
    assert store.get(first.id) is None and len(store) == 2
    assert store.get(second.id) == second and store.get(third.id) == third


def test_sessions_survive_reopening_and_are_shared_by_stores_on_one_directory(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    one = SessionStore(tmp_path, clock, lifetime=60)
    session = one.open("acme", "boss", "tok1")
    one.shut()
    # A restart: a new store on the same directory still knows the session.
    again = SessionStore(tmp_path, clock, lifetime=60)
    assert again.get(session.id) == session
    # Two processes on one data directory: a sign-out in one ends it in the other.
    other = SessionStore(tmp_path, clock, lifetime=60)
    assert other.get(session.id) == session
    other.close(session.id)
    assert again.get(session.id) is None


def test_at_rest_a_session_is_keyed_by_a_hash_and_holds_no_secret(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, ManualClock(), lifetime=60)
    session = store.open("acme", "boss", "tok1")
    store.shut()
    assert SessionStore(tmp_path, ManualClock(), lifetime=60).keys() == [session_key(session.id)]
    on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert session.id.encode() not in on_disk and session.csrf.encode() not in on_disk
    assert b"tok1" in on_disk  # the record itself is there (the token's id, not its secret)
