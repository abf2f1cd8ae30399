"""Who is asking: a user of a tenancy (by auth token or bearer token) or an anonymous client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request.

    ``access`` is the bearer token's access claim as ``(type, name, action)`` triples, or
    ``None`` when no bearer token was used (Basic credentials, or no credentials at all): then
    only the policies limit the caller.
    """

    tenancy: str | None = None
    user: str | None = None
    token_id: str | None = None
    access: frozenset[tuple[str, str, str]] | None = None

    @property
    def anonymous(self) -> bool:
        """Whether no user logged in."""
        return self.user is None

    @property
    def subject(self) -> str:
        """``<tenancy>/<user>``, or ``""`` for anonymous clients."""
        return f"{self.tenancy}/{self.user}" if self.user is not None else ""

    def holds(self, kind: str, name: str, action: str) -> bool:
        """Whether the bearer token (if any) carries this access."""
        return self.access is None or (kind, name, action) in self.access


ANONYMOUS = Principal()
