"""Policy statements: the grammar (good statements, and bad ones with the column and what was
expected there) and their evaluation."""

from __future__ import annotations

import pytest

from mirror.auth.policy.evaluate import allows, strongest
from mirror.auth.policy.grammar import (
    Condition,
    Operator,
    PolicyError,
    Verb,
    parse_statement,
    parse_statements,
)


@pytest.mark.parametrize(
    ("text", "groups", "verb", "condition"),
    [
        pytest.param(
            "allow group acme-viewers to inspect repos in tenancy",
            ("acme-viewers",),
            Verb.INSPECT,
            None,
            id="inspect",
        ),
        pytest.param(
            "allow group acme-managers to manage repos in tenancy",
            ("acme-managers",),
            Verb.MANAGE,
            None,
            id="manage",
        ),
        pytest.param(
            "Allow Group devs To READ Repos In Tenancy", ("devs",), Verb.READ, None, id="any-case"
        ),
        pytest.param(
            "allow group a, b,c to use repos in tenancy", ("a", "b", "c"), Verb.USE, None, id="list"
        ),
        pytest.param(
            "allow any-user to read repos in tenancy", None, Verb.READ, None, id="any-user"
        ),
        pytest.param(
            "allow group 'Ops Team' to read repos in tenancy",
            ("Ops Team",),
            Verb.READ,
            None,
            id="quoted-group",
        ),
        pytest.param(
            "allow group x to read repos in tenancy where target.repo.name = 'hub/app'",
            ("x",),
            Verb.READ,
            Condition(Operator.EQUALS, "hub/app"),
            id="equals",
        ),
        pytest.param(
            "allow group x to read repos in tenancy where target.repo.name =~ 'hub/*'",
            ("x",),
            Verb.READ,
            Condition(Operator.MATCHES, "hub/*"),
            id="glob",
        ),
        pytest.param(
            "  allow group x to read repos in tenancy where target.repo.name!='a'  ",
            ("x",),
            Verb.READ,
            Condition(Operator.NOT_EQUALS, "a"),
            id="spacing",
        ),
    ],
)
def test_good_statements(
    text: str, groups: tuple[str, ...] | None, verb: Verb, condition: Condition | None
) -> None:
    statement = parse_statement(text)

    assert (statement.groups, statement.verb, statement.condition) == (groups, verb, condition)


@pytest.mark.parametrize(
    ("text", "column", "expected", "found"),
    [
        pytest.param("", 1, "'allow'", "end of statement", id="empty"),
        pytest.param("deny group x to read repos in tenancy", 1, "'allow'", "'deny'", id="deny"),
        pytest.param("allow user x to read", 7, "'group' or 'any-user'", "'user'", id="subject"),
        pytest.param("allow group to read", 13, "a group name", "'to'", id="no-group"),
        pytest.param("allow group x, to read", 16, "a group name", "'to'", id="dangling-comma"),
        pytest.param("allow group x read repos", 15, "'to'", "'read'", id="no-to"),
        pytest.param(
            "allow group x to pull repos in tenancy",
            18,
            "a verb (inspect, read, use or manage)",
            "'pull'",
            id="bad-verb",
        ),
        pytest.param("allow group x to read images", 23, "'repos'", "'images'", id="resource"),
        pytest.param(
            "allow group x to read repos on tenancy", 29, "'in'", "'on'", id="location-word"
        ),
        pytest.param(
            "allow group x to read repos in compartment y",
            32,
            "'tenancy'",
            "'compartment'",
            id="compartment",
        ),
        pytest.param(
            "allow group x to read repos in tenancy if", 40, "'where'", "'if'", id="no-where"
        ),
        pytest.param(
            "allow group x to read repos in tenancy where",
            45,
            "'target.repo.name'",
            "end of statement",
            id="empty-condition",
        ),
        pytest.param(
            "allow group x to read repos in tenancy where target.tag = 'a'",
            46,
            "'target.repo.name'",
            "'target.tag'",
            id="unknown-variable",
        ),
        pytest.param(
            "allow group x to read repos in tenancy where target.repo.name 'a'",
            63,
            "'=', '!=' or '=~'",
            "\"'a'\"",
            id="no-operator",
        ),
        pytest.param(
            "allow group x to read repos in tenancy where target.repo.name = a",
            65,
            "a quoted string ('...')",
            "'a'",
            id="unquoted-value",
        ),
        pytest.param(
            "allow group x to read repos in tenancy where target.repo.name = 'a",
            65,
            "a closing quote (')",
            "end of statement",
            id="unterminated-string",
        ),
        pytest.param(
            "allow group x to read repos in tenancy where target.repo.name = 'a' and",
            69,
            "end of statement",
            "'and'",
            id="trailing-words",
        ),
        pytest.param("allow group x to read repos in tenancy;", 39, "'where'", "';'", id="junk"),
    ],
)
def test_bad_statements_name_the_position(
    text: str, column: int, expected: str, found: str
) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_statement(text)

    assert (raised.value.column, raised.value.expected, raised.value.found) == (
        column,
        expected,
        found,
    )
    assert str(raised.value) == f"column {column}: expected {expected}, found {found}"


def test_a_list_fails_as_a_whole_naming_the_statement() -> None:
    good = "allow any-user to read repos in tenancy"

    with pytest.raises(PolicyError) as raised:
        parse_statements([good, good, "allow group x to fly repos in tenancy"])

    assert raised.value.index == 2
    assert str(raised.value).startswith("statement 3, column 18: expected a verb")


READ_HUB = parse_statement(
    "allow group devs to read repos in tenancy where target.repo.name =~ 'hub/*'"
)
MANAGE_APP = parse_statement(
    "allow group ops to manage repos in tenancy where target.repo.name = 'app'"
)
INSPECT_ALL = parse_statement("allow any-user to inspect repos in tenancy")
STATEMENTS = (READ_HUB, MANAGE_APP, INSPECT_ALL)


@pytest.mark.parametrize(
    ("groups", "repo", "needed", "allowed"),
    [
        pytest.param({"devs"}, "hub/library/alpine", Verb.READ, True, id="glob-read"),
        pytest.param({"devs"}, "hub/library/alpine", Verb.USE, False, id="glob-no-push"),
        pytest.param({"devs"}, "other/app", Verb.READ, False, id="glob-miss"),
        pytest.param({"devs"}, "other/app", Verb.INSPECT, True, id="any-user-inspect"),
        pytest.param({"ops"}, "app", Verb.MANAGE, True, id="manage-exact"),
        pytest.param({"ops"}, "app", Verb.READ, True, id="manage-includes-read"),
        pytest.param({"ops"}, "app/sub", Verb.READ, False, id="exact-is-exact"),
        pytest.param(set(), "hub/x", Verb.READ, False, id="no-groups"),
        pytest.param(set(), "hub/x", Verb.INSPECT, True, id="no-groups-any-user"),
    ],
)
def test_evaluation(groups: set[str], repo: str, needed: Verb, allowed: bool) -> None:
    assert allows(STATEMENTS, frozenset(groups), repo, needed) is allowed


def test_strongest_verb() -> None:
    assert strongest(STATEMENTS, frozenset({"ops", "devs"}), "app") is Verb.MANAGE
    assert strongest(STATEMENTS, frozenset(), "x") is Verb.INSPECT
    assert strongest((READ_HUB,), frozenset(), "x") is None
