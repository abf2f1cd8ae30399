"""What the console offers a viewer: a form is shown only when the check its POST makes could
pass (the POST still makes that check; a forged form gets 403)."""

from __future__ import annotations

from mirror.auth.policy.evaluate import applies_to
from mirror.auth.policy.grammar import Verb
from mirror.auth.principal import Principal
from mirror.auth.service import AuthService


def may_create_in(auth: AuthService, principal: Principal, tenancy: str) -> bool:
    """Whether ``principal`` may manage some repository name in ``tenancy`` (the create
    POST's check, ``manage`` on the new name, can pass for at least one name)."""
    if auth.authorizer.is_tenancy_admin(principal, tenancy):
        return True
    if principal.tenancy != tenancy or principal.user is None:
        return False
    groups = auth.identity.groups_of(tenancy, principal.user)
    return any(
        s.verb >= Verb.MANAGE and applies_to(s, groups) for s in auth.identity.statements(tenancy)
    )


def creatable_names(auth: AuthService, principal: Principal, tenancy: str) -> list[str]:
    """The conditions on names ``principal`` may create (``[]``: any name), for the form's
    hint."""
    if auth.authorizer.is_tenancy_admin(principal, tenancy) or principal.user is None:
        return []
    groups = auth.identity.groups_of(tenancy, principal.user)
    found = []
    for s in auth.identity.statements(tenancy):
        if s.verb >= Verb.MANAGE and applies_to(s, groups):
            if s.condition is None:
                return []
            found.append(f"{s.condition.operator.value} '{s.condition.value}'")
    return found
