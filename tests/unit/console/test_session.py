from mirror.clock import ManualClock
from mirror.console.session import SessionStore


def test_a_session_lives_for_its_lifetime_and_no_longer() -> None:
    clock = ManualClock()
    store = SessionStore(clock, lifetime=60)
    session = store.open("acme", "boss", "tok1")
    clock.advance(59)
    assert store.get(session.id) == session
    clock.advance(1)
    assert store.get(session.id) is None


def test_signing_out_ends_the_session() -> None:
    store = SessionStore(ManualClock(), lifetime=60)
    session = store.open("acme", "boss", "tok1")
    store.close(session.id)
    assert store.get(session.id) is None


def test_ids_and_csrf_tokens_are_unguessable_and_distinct() -> None:
    store = SessionStore(ManualClock(), lifetime=60)
    a, b = store.open("acme", "boss", "t"), store.open("acme", "boss", "t")
    assert a.id != b.id and a.csrf != b.csrf and a.id != a.csrf
    assert len(a.id) >= 40 and store.get("") is None and store.get("guess") is None


def test_the_oldest_session_is_dropped_past_the_bound() -> None:
    store = SessionStore(ManualClock(), lifetime=60, max_sessions=2)
    first = store.open("a", "u", "t")
    store.open("a", "u", "t")
    store.open("a", "u", "t")
    assert store.get(first.id) is None and len(store) == 2
