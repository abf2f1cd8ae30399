"""Parse policy statements (the cloud registry's grammar) into :class:`Statement` values.

::

    statement := "allow" subject "to" verb "repos" "in" "tenancy" [ "where" condition ]
    subject   := "group" NAME { "," NAME } | "any-user"
    verb      := "inspect" | "read" | "use" | "manage"
    condition := "target.repo.name" ( "=" | "!=" | "=~" ) 'STRING'

Keywords are case-insensitive. A statement that does not parse raises :class:`PolicyError`
naming the 1-based column and what was expected there.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'[^']*')
  | (?P<open>'[^']*$)
  | (?P<op>=~|!=|=)
  | (?P<comma>,)
  | (?P<word>[A-Za-z0-9_.@-]+)
  | (?P<other>.)
    """,
    re.VERBOSE,
)


_RESERVED = frozenset({"allow", "group", "any-user", "to", "repos", "in", "tenancy", "where"})


class Verb(enum.IntEnum):
    """What a statement lets its subjects do; each verb includes the ones below it."""

    INSPECT = 1  # list repositories and tags
    READ = 2  # pull
    USE = 3  # pull and push
    MANAGE = 4  # everything: create and delete repositories, change their settings


class Operator(enum.Enum):
    """How a condition compares ``target.repo.name``."""

    EQUALS = "="
    NOT_EQUALS = "!="
    MATCHES = "=~"  # a glob: ``*`` any run of characters (``/`` too), ``?`` one, ``[...]``


@dataclass(frozen=True, slots=True)
class Condition:
    """``where target.repo.name <operator> '<value>'``."""

    operator: Operator
    value: str


@dataclass(frozen=True, slots=True)
class Statement:
    """One parsed statement; ``groups`` is ``None`` for ``any-user``."""

    groups: tuple[str, ...] | None
    verb: Verb
    condition: Condition | None
    text: str


class PolicyError(ValueError):
    """A statement did not parse: ``column`` (1-based), what was ``expected`` and ``found``."""

    def __init__(self, text: str, column: int, expected: str, found: str) -> None:
        self.text = text
        self.column = column
        self.expected = expected
        self.found = found
        # Which statement of a list failed (0-based), when parsed with ``parse_statements``.
        self.index: int | None = None
        super().__init__(f"column {column}: expected {expected}, found {found}")

    def __str__(self) -> str:
        where = f"statement {self.index + 1}, " if self.index is not None else ""
        return f"{where}column {self.column}: expected {self.expected}, found {self.found}"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    value: str
    column: int

    def describe(self) -> str:
        return "end of statement" if self.kind == "end" else repr(self.value)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        column = match.start() + 1
        if kind == "space":
            continue
        if kind == "open":
            raise PolicyError(text, column, "a closing quote (')", "end of statement")
        tokens.append(_Token(kind, match.group(), column))
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def fail(self, expected: str) -> PolicyError:
        token = self.peek()
        return PolicyError(self.text, token.column, expected, token.describe())

    def keyword(self, *words: str) -> str:
        token = self.peek()
        if token.kind != "word" or token.value.lower() not in words:
            raise self.fail(" or ".join(f"'{w}'" for w in words))
        self.take()
        return token.value.lower()

    def name(self, what: str) -> str:
        token = self.peek()
        reserved = token.kind == "word" and token.value.lower() in _RESERVED
        if token.kind not in ("word", "string") or reserved or token.value == "''":
            raise self.fail(what)
        self.take()
        return token.value.strip("'")

    def statement(self) -> Statement:
        self.keyword("allow")
        groups: tuple[str, ...] | None
        if self.keyword("group", "any-user") == "group":
            names = [self.name("a group name")]
            while self.peek().kind == "comma":
                self.take()
                names.append(self.name("a group name"))
            groups = tuple(names)
        else:
            groups = None
        self.keyword("to")
        token = self.peek()
        try:
            verb = Verb[token.value.upper()] if token.kind == "word" else None
        except KeyError:
            verb = None
        if verb is None:
            raise self.fail("a verb (inspect, read, use or manage)")
        self.take()
        self.keyword("repos")
        self.keyword("in")
        self.keyword("tenancy")
        condition = None
        if self.peek().kind != "end":
            self.keyword("where")
            condition = self.condition()
        if self.peek().kind != "end":
            raise self.fail("end of statement")
        return Statement(groups, verb, condition, self.text)

    def condition(self) -> Condition:
        self.keyword("target.repo.name")
        token = self.peek()
        if token.kind != "op":
            raise self.fail("'=', '!=' or '=~'")
        self.take()
        value = self.peek()
        if value.kind != "string":
            raise self.fail("a quoted string ('...')")
        self.take()
        return Condition(Operator(token.value), value.value[1:-1])


def parse_statement(text: str) -> Statement:
    """Parse one statement; raises :class:`PolicyError`."""
    return _Parser(text).statement()


def parse_statements(texts: list[str] | tuple[str, ...]) -> tuple[Statement, ...]:
    """Parse all statements or none: the first failure raises with its index noted."""
    parsed = []
    for index, text in enumerate(texts):
        try:
            parsed.append(parse_statement(text))
        except PolicyError as exc:
            exc.index = index
            raise
    return tuple(parsed)
