"""Retention policies as values: request JSON parsed into a policy or an edit, each bad field
refused as ``POLICY_INVALID`` naming it."""

from __future__ import annotations

from typing import Any

import pytest

from mirror.errors import ErrorCode
from mirror.retention.policy import (
    KEEP,
    PolicyEdit,
    PolicyInvalid,
    RetentionPolicy,
    parse_edit,
    parse_policy,
    widens,
)


def test_a_spec_becomes_a_policy_with_tuple_exempt_tags() -> None:
    policy = parse_policy({"name": "stale", "not_pulled_days": 30, "exempt_tags": ["v*"]})

    assert policy == RetentionPolicy("stale", not_pulled_days=30, exempt_tags=("v*",))


def test_an_edit_sets_only_the_fields_given() -> None:
    edit = parse_edit({"not_tagged_days": None, "exempt_tags": ["latest"]})

    assert edit == PolicyEdit(not_tagged_days=None, exempt_tags=("latest",))
    assert edit.not_pulled_days is KEEP
    assert edit.changes() == {"not_tagged_days": None, "exempt_tags": ("latest",)}
    old = RetentionPolicy("p", not_pulled_days=30, not_tagged_days=7)
    assert edit.apply(old) == RetentionPolicy("p", not_pulled_days=30, exempt_tags=("latest",))


def test_the_edit_to_match_a_declared_policy_sets_every_editable_field() -> None:
    declared = RetentionPolicy("p", not_pulled_days=60, exempt_tags=("v*",), match="all")

    assert PolicyEdit.to_match(declared).apply(RetentionPolicy("p", not_tagged_days=7)) == declared


@pytest.mark.parametrize(
    ("spec", "detail"),
    [
        pytest.param({"not_pulled_days": 3}, {"unknown": []}, id="no-name"),
        pytest.param({"name": "a", "size": 3}, {"unknown": ["size"]}, id="unknown-field"),
        pytest.param({"name": "a", "exempt_tags": "v*"}, None, id="tags-not-a-list"),
        pytest.param({"name": "Bad Name"}, {"name": "Bad Name"}, id="bad-name"),
        pytest.param(
            {"name": "a", "not_pulled_days": -1},
            {"field": "not_pulled_days", "value": -1},
            id="negative-days",
        ),
        pytest.param(
            {"name": "a", "not_tagged_days": True},
            {"field": "not_tagged_days", "value": True},
            id="days-a-boolean",
        ),
        pytest.param(
            {"name": "a", "exempt_tags": ["v 1"]},
            {"field": "exempt_tags", "value": "v 1"},
            id="bad-exempt-tag",
        ),
        pytest.param({"name": "a", "match": "most"}, {"value": "most"}, id="bad-match"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(
    spec: dict[str, Any], detail: dict[str, Any] | None
) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(spec)

    assert caught.value.code is ErrorCode.POLICY_INVALID
    assert caught.value.detail == detail
    assert caught.value.field == (detail or {}).get("field")


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"name": "x"}, id="edit-name"),
        pytest.param({"exempt_tags": "v*"}, id="edit-tags-not-a-list"),
    ],
)
def test_bad_edits_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_edit(changes)

    assert caught.value.code is ErrorCode.POLICY_INVALID


P30 = RetentionPolicy("p", not_pulled_days=30)
T7 = RetentionPolicy("p", not_tagged_days=7)
BOTH_ANY = RetentionPolicy("p", not_pulled_days=30, not_tagged_days=7)
BOTH_ALL = RetentionPolicy("p", not_pulled_days=30, not_tagged_days=7, match="all")


@pytest.mark.parametrize(
    ("old", "new", "wider"),
    [
        pytest.param(RetentionPolicy("p"), P30, True, id="first-criterion"),
        pytest.param(P30, RetentionPolicy("p", not_pulled_days=20), True, id="fewer-days"),
        pytest.param(P30, RetentionPolicy("p", not_pulled_days=40), False, id="more-days"),
        pytest.param(P30, RetentionPolicy("p"), False, id="criterion-removed"),
        pytest.param(P30, BOTH_ANY, True, id="any-criterion-added"),
        pytest.param(P30, BOTH_ALL, False, id="all-criterion-added"),
        pytest.param(BOTH_ALL, P30, True, id="all-criterion-removed"),
        pytest.param(BOTH_ALL, BOTH_ANY, True, id="all-to-any"),
        pytest.param(BOTH_ANY, BOTH_ALL, False, id="any-to-all"),
        pytest.param(BOTH_ANY, T7, False, id="any-criterion-removed"),
        pytest.param(
            RetentionPolicy("p", not_pulled_days=30, exempt_tags=("v*",)),
            P30,
            True,
            id="exemption-removed",
        ),
        pytest.param(
            P30,
            RetentionPolicy("p", not_pulled_days=30, exempt_tags=("v*",)),
            False,
            id="exemption-added",
        ),
    ],
)
def test_widening(old: RetentionPolicy, new: RetentionPolicy, wider: bool) -> None:
    assert widens(old, new) is wider
