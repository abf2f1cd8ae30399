"""Evaluate parsed statements: may members of these groups do this to that repository?"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from mirror.auth.policy.grammar import Condition, Operator, Statement, Verb


def condition_holds(condition: Condition | None, repo: str) -> bool:
    """Whether ``repo`` (the name inside its tenancy) satisfies ``condition``."""
    if condition is None:
        return True
    if condition.operator is Operator.EQUALS:
        return repo == condition.value
    if condition.operator is Operator.NOT_EQUALS:
        return repo != condition.value
    return fnmatch.fnmatchcase(repo, condition.value)


def applies_to(statement: Statement, groups: frozenset[str]) -> bool:
    """Whether the statement's subject covers a member of ``groups``."""
    return statement.groups is None or not groups.isdisjoint(statement.groups)


def allows(
    statements: Iterable[Statement], groups: frozenset[str], repo: str, needed: Verb
) -> bool:
    """Whether any statement grants ``needed`` (or a stronger verb) on ``repo`` to ``groups``."""
    return any(
        s.verb >= needed and applies_to(s, groups) and condition_holds(s.condition, repo)
        for s in statements
    )


def strongest(statements: Iterable[Statement], groups: frozenset[str], repo: str) -> Verb | None:
    """The strongest verb granted on ``repo`` to ``groups``, or ``None``."""
    granted = [
        s.verb for s in statements if applies_to(s, groups) and condition_holds(s.condition, repo)
    ]
    return max(granted) if granted else None
