"""A tenancy's access policies: one statement a line; a statement that does not parse is
shown with a caret at the column the grammar names, and nothing is saved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mirror.console.render import page
from mirror.console.viewer import form_of
from mirror.console.views.access import tenancy_admin
from mirror.db.identity.records import group_name
from mirror.errors import ErrorCode, RegistryError


@dataclass(frozen=True, slots=True)
class GrammarError:
    """Where a statement went wrong: its text, line (1-based), column and the message."""

    statement: str
    line: int
    column: int
    message: str

    @property
    def caret(self) -> str:
        """Spaces up to the column, then ``^``."""
        return " " * (self.column - 1) + "^"


def grammar_error(statements: list[str], exc: RegistryError) -> GrammarError | None:
    """The grammar error of a ``POLICY_INVALID`` refusal, if it names a statement."""
    detail: Any = exc.detail
    if exc.code is not ErrorCode.POLICY_INVALID or not isinstance(detail, dict):
        return None
    index, column = detail.get("statement"), detail.get("column")
    if not isinstance(index, int) or not isinstance(column, int) or index >= len(statements):
        return None
    return GrammarError(statements[index], index + 1, column, exc.message)


def _page(request: web.Request, status: int = 200, **shown: Any) -> web.Response:
    who, auth, tenancy = tenancy_admin(request)
    context = {"error": None, "grammar": None, "draft": None} | shown
    policies = auth.identity.policies(tenancy)
    return page(
        request, "policies.html", who, status, tenancy=tenancy, policies=policies, **context
    )


async def policies(request: web.Request) -> web.Response:
    """``GET /console/t/{tenancy}/policies``."""
    return _page(request)


async def save(request: web.Request) -> web.Response:
    """``POST .../policies``: create or replace a policy (every statement parses, or none is
    saved)."""
    who, auth, tenancy = tenancy_admin(request)
    data = await form_of(request, who)
    name = data.get("name", "").strip()
    statements = [line.strip() for line in data.get("statements", "").splitlines() if line.strip()]
    try:
        auth.identity.set_policy(tenancy, group_name(name), tuple(statements))
    except RegistryError as exc:
        draft = {"name": name, "statements": "\n".join(statements)}
        found = grammar_error(statements, exc)
        return _page(request, exc.status, error=exc.message, grammar=found, draft=draft)
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/policies")


async def delete(request: web.Request) -> web.Response:
    """``POST .../policies/{policy}/delete``."""
    who, auth, tenancy = tenancy_admin(request)
    await form_of(request, who)
    auth.identity.delete_policy(tenancy, request.match_info["policy"])
    raise web.HTTPSeeOther(f"/console/t/{tenancy}/policies")
