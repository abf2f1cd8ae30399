"""``WWW-Authenticate`` challenges (RFC 9110 §11.6.1), as registries send them.

Handles several challenges in one header or across headers, quoted values with commas and
escapes, and unquoted tokens; malformed pieces are skipped rather than raised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header; ``scheme`` is lower-cased."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        """The token endpoint (Bearer) or protection space (Basic)."""
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        """The service name to ask the token endpoint for."""
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        """The scope the upstream wants, e.g. ``repository:library/alpine:pull``."""
        return self.params.get("scope")


class _Scanner:
    """A cursor over a header value (RFC 9110 tokens, quoted strings, commas)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def token(self) -> str | None:
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def quoted(self) -> str:
        """A quoted string starting at the cursor; an unterminated one runs to the end."""
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                break
            else:
                out.append(char)
        return "".join(out)

    def skip_item(self) -> None:
        """Skip malformed input up to the next comma outside quotes."""
        while not self.done() and self.peek() != ",":
            if self.peek() == '"':
                self.quoted()
            else:
                self.pos += 1


def _parse_params(scanner: _Scanner) -> dict[str, str]:
    """``name=value`` pairs after a scheme, stopping before the next challenge's scheme."""
    params: dict[str, str] = {}
    while not scanner.done():
        start = scanner.pos
        scanner.skip(" \t,")
        name = scanner.token()
        scanner.skip(" \t")
        if name is None or scanner.peek() != "=":
            if name is None and not scanner.done():
                scanner.skip_item()
                continue
            scanner.pos = start  # a bare token here is the next challenge's scheme
            break
        scanner.pos += 1
        scanner.skip(" \t")
        value = scanner.quoted() if scanner.peek() == '"' else (scanner.token() or "")
        params[name.lower()] = value
        scanner.skip(" \t")
        if not scanner.done() and scanner.peek() != ",":
            scanner.skip_item()
    return params


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or more ``WWW-Authenticate`` header values (RFC 9110 §11.6.1)."""
    values = [headers] if isinstance(headers, str) else list(headers)
    challenges: list[Challenge] = []
    for value in values:
        scanner = _Scanner(value)
        while True:
            scanner.skip(" \t,")
            scheme = scanner.token()
            if scheme is None:
                if scanner.done():
                    break
                scanner.skip_item()
                continue
            challenges.append(Challenge(scheme.lower(), _parse_params(scanner)))
    return challenges
