"""Access scopes of the registry token flow: ``repository:<name>:pull,push``,
``registry:catalog:*`` (distribution "Token Scope Documentation")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PULL = "pull"
PUSH = "push"
DELETE = "delete"
ALL = "*"
REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG = "catalog"
_REPOSITORY_ACTIONS = (PULL, PUSH, DELETE, ALL)


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource and the actions asked for or granted on it."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    def claim(self) -> dict[str, object]:
        """The entry of a token's ``access`` claim."""
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scope(text: str) -> Scope | None:
    """Parse one scope; ``None`` for anything malformed or of an unknown type (ignored, as
    distribution's token servers do). Names may contain ``:`` (``host:port/repo``)."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name or not actions:
        return None
    wanted = tuple(dict.fromkeys(a for a in actions.split(",") if a))
    if kind == REPOSITORY and wanted and all(a in _REPOSITORY_ACTIONS for a in wanted):
        return Scope(kind, name, wanted)
    if kind == REGISTRY and name == CATALOG and wanted == (ALL,):
        return Scope(kind, name, wanted)
    return None


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Every scope of the ``scope`` parameters (repeated, or space-separated in one)."""
    scopes: list[Scope] = []
    for value in values:
        for part in value.split():
            scope = parse_scope(part)
            if scope is not None:
                scopes.append(scope)
    return scopes


def access_set(claim: object) -> frozenset[tuple[str, str, str]]:
    """``(type, name, action)`` triples of a token's ``access`` claim (malformed entries drop)."""
    found: set[tuple[str, str, str]] = set()
    if not isinstance(claim, list):
        return frozenset()
    for entry in claim:
        if not isinstance(entry, dict):
            continue
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if isinstance(kind, str) and isinstance(name, str) and isinstance(actions, list):
            found.update((kind, name, a) for a in actions if isinstance(a, str))
    return frozenset(found)
