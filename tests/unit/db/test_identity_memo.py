"""The identity store's memo stays bounded whatever names anonymous requests send."""

from __future__ import annotations

from pathlib import Path

from mirror.db.identity.store import IdentityStore


def test_unknown_and_invalid_first_components_leave_the_memo_bounded(tmp_path: Path) -> None:
    store = IdentityStore(tmp_path / "identity", memo_size=100)
    try:
        store.create_tenancy("acme", 0.0)
        for i in range(2_000):
            assert store.tenancy(f"Not.A.Tenancy{i}") is None
        assert store.memo_entries == 0
        for i in range(2_000):
            assert store.tenancy(f"unknown-{i}") is None
            assert store.user("acme", f"nobody-{i}") is None
        assert store.memo_entries == 100
        assert store.tenancy("acme") is not None
    finally:
        store.close()
