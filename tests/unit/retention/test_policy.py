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
