"""Persisted retention policies: one policy per repository, widening restarts cooling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror.db.retention import RetentionStore
from mirror.errors import ErrorCode, RegistryError
from mirror.oci.digest import Digest
from mirror.retention.policy import GLOBAL, RetentionPolicy, parse_edit

T0 = 1_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RetentionStore]:
    opened = RetentionStore(tmp_path / "retention")
    yield opened
    opened.close()


def code_of(call: Any, *args: Any, **kwargs: Any) -> ErrorCode:
    with pytest.raises(RegistryError) as caught:
        call(*args, **kwargs)
    return caught.value.code


def test_global_policy_exists_from_the_start_and_retains_everything(
    store: RetentionStore,
) -> None:
    policy, since = store.state().governing("registry.test/any/repo")

    assert policy == RetentionPolicy(GLOBAL)
    assert policy.criteria() == {}
    assert since == 0.0


def test_global_policy_can_be_edited_but_not_deleted(store: RetentionStore) -> None:
    edited = store.edit(GLOBAL, parse_edit({"not_pulled_days": 90}), T0)

    assert edited.not_pulled_days == 90
    assert edited.widened_at == T0
    assert code_of(store.delete, GLOBAL, T0) is ErrorCode.POLICY_CONFLICT


def test_repository_belongs_to_at_most_one_custom_policy(store: RetentionStore) -> None:
    store.create(RetentionPolicy("a", not_pulled_days=30), T0)
    store.create(RetentionPolicy("b", not_tagged_days=7), T0)
    store.attach("a", "registry.test/team/app", T0 + 1)

    assert code_of(store.attach, "b", "registry.test/team/app", T0 + 2) is (
        ErrorCode.POLICY_CONFLICT
    )
    assert store.state().governing("registry.test/team/app") == (
        store.state().policy("a"),
        T0 + 1,
    )

    store.attach("b", "registry.test/team/app", T0 + 3, move=True)

    state = store.state()
    assert state.repositories("a") == ()
    assert state.repositories("b") == ("registry.test/team/app",)
    assert state.governing("registry.test/team/app")[1] == T0 + 3


def test_attaching_twice_to_the_same_policy_keeps_the_first_attachment(
    store: RetentionStore,
) -> None:
    store.create(RetentionPolicy("a", not_pulled_days=30), T0)
    store.attach("a", "registry.test/team/app", T0 + 1)
    store.attach("a", "registry.test/team/app", T0 + 2)

    assert store.state().governing("registry.test/team/app")[1] == T0 + 1


def test_detach_returns_the_repository_to_global_from_that_moment(store: RetentionStore) -> None:
    store.create(RetentionPolicy("a", not_pulled_days=30), T0)
    store.attach("a", "registry.test/team/app", T0)

    store.detach("a", "registry.test/team/app", T0 + 5)

    policy, since = store.state().governing("registry.test/team/app")
    assert (policy.name, since) == (GLOBAL, T0 + 5)
    assert code_of(store.detach, "a", "registry.test/team/app", T0) is ErrorCode.POLICY_UNKNOWN


def test_deleting_a_policy_moves_its_repositories_to_global(store: RetentionStore) -> None:
    store.create(RetentionPolicy("a", not_pulled_days=30), T0)
    store.attach("a", "registry.test/team/app", T0)

    store.delete("a", T0 + 9)

    assert [p.name for p in store.state().policies] == [GLOBAL]
    assert store.state().governing("registry.test/team/app")[0].name == GLOBAL
    assert code_of(store.delete, "a", T0) is ErrorCode.POLICY_UNKNOWN


@pytest.mark.parametrize(
    ("call", "args", "code"),
    [
        pytest.param(
            "create", (RetentionPolicy("Bad Name"), T0), ErrorCode.POLICY_INVALID, id="bad-name"
        ),
        pytest.param(
            "create",
            (RetentionPolicy("a", not_pulled_days=-1), T0),
            ErrorCode.POLICY_INVALID,
            id="neg",
        ),
        pytest.param(
            "create",
            (RetentionPolicy("a", not_tagged_days="7"), T0),  # type: ignore[arg-type]
            ErrorCode.POLICY_INVALID,
            id="days-not-a-number",
        ),
        pytest.param(
            "create",
            (RetentionPolicy("a", exempt_tags=("v 1",)), T0),
            ErrorCode.POLICY_INVALID,
            id="bad-exempt-tag",
        ),
        pytest.param(
            "create",
            (RetentionPolicy("a", match="most"), T0),
            ErrorCode.POLICY_INVALID,
            id="bad-match",
        ),
        pytest.param(
            "create", (RetentionPolicy(GLOBAL), T0), ErrorCode.POLICY_CONFLICT, id="global-exists"
        ),
        pytest.param(
            "edit",
            ("nope", parse_edit({"match": "all"}), T0),
            ErrorCode.POLICY_UNKNOWN,
            id="edit-unknown",
        ),
        pytest.param(
            "edit",
            (GLOBAL, parse_edit({"not_pulled_days": -1}), T0),
            ErrorCode.POLICY_INVALID,
            id="edit-negative-days",
        ),
        pytest.param(
            "attach", ("nope", "r.test/a", T0), ErrorCode.POLICY_UNKNOWN, id="attach-unknown"
        ),
        pytest.param(
            "attach", (GLOBAL, "r.test/a", T0), ErrorCode.POLICY_CONFLICT, id="attach-global"
        ),
        pytest.param("delete", ("nope", T0), ErrorCode.POLICY_UNKNOWN, id="delete-unknown"),
    ],
)
def test_refusals(store: RetentionStore, call: str, args: tuple[Any, ...], code: ErrorCode) -> None:
    assert code_of(getattr(store, call), *args) is code


def test_policies_persist_across_reopening(tmp_path: Path) -> None:
    first = RetentionStore(tmp_path / "retention")
    first.create(RetentionPolicy("a", not_pulled_days=30, exempt_tags=("v*",)), T0)
    first.attach("a", "registry.test/team/app", T0)
    first.set_deferred({Digest.parse("sha256:" + "f" * 64): T0})
    first.close()

    again = RetentionStore(tmp_path / "retention")
    try:
        assert again.state().policy("a").exempt_tags == ("v*",)
        assert again.state().repositories("a") == ("registry.test/team/app",)
        assert again.deferred() == {Digest.parse("sha256:" + "f" * 64): T0}
    finally:
        again.close()


def test_declare_creates_then_updates_and_moves_repositories(store: RetentionStore) -> None:
    store.create(RetentionPolicy("other"), T0)
    store.attach("other", "registry.test/team/app", T0)

    store.declare(RetentionPolicy("stale", not_pulled_days=30), ("registry.test/team/app",), T0 + 1)
    store.declare(RetentionPolicy("stale", not_pulled_days=60), (), T0 + 2)

    state = store.state()
    assert state.policy("stale").not_pulled_days == 60
    assert state.policy("stale").widened_at == T0 + 1  # 30 -> 60 days narrows
    assert state.repositories("stale") == ("registry.test/team/app",)


def test_narrowing_edit_keeps_the_cooling_clock(store: RetentionStore) -> None:
    store.create(RetentionPolicy("a", not_pulled_days=30), T0)

    narrowed = store.edit("a", parse_edit({"not_pulled_days": 40, "exempt_tags": ["v*"]}), T0 + 100)
    widened = store.edit("a", parse_edit({"not_pulled_days": 10}), T0 + 200)

    assert narrowed.widened_at == T0
    assert widened.widened_at == T0 + 200
