"""Single-range ``Range`` requests on blobs (RFC 9110 §14; distribution-spec "Pulling blobs")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirror.errors import ErrorCode, RegistryError

_RANGE = re.compile(r"([0-9]*)-([0-9]*)")
# Positions with more digits than this lie past the end of any object the mirror can hold;
# they are compared as digit strings and stand for ``BEYOND`` (``int()`` refuses numbers of
# more than 4300 digits, and converting huge ones costs time quadratic in their length).
_MAX_DIGITS = 32
BEYOND = 10**_MAX_DIGITS
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range ``first..last`` within an object of ``size`` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        """How many bytes the range covers."""
        return self.last - self.first + 1

    def content_range(self) -> str:
        """The ``Content-Range`` header value of a 206 answer."""
        return f"bytes {self.first}-{self.last}/{self.size}"


def parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    """Parse a ``Range`` header into ``(first, last)`` before the size is known.

    Returns ``None`` when there is no header, and for a well-formed range the mirror does not
    serve (another unit, several ranges): RFC 9110 §14.2 lets a server ignore those and answer
    the whole blob. ``(None, n)`` is a suffix range (last n bytes). Raises ``RANGE_INVALID``
    for a malformed header.
    """
    if header is None:
        return None
    invalid = RegistryError(ErrorCode.RANGE_INVALID, detail={"range": header})
    unit, sep, ranges = header.strip().partition("=")
    if not sep or not _TOKEN.fullmatch(unit):
        raise invalid
    if unit.lower() != "bytes" or "," in ranges:
        return None
    match = _RANGE.fullmatch(ranges.strip())
    if not match or (not match.group(1) and not match.group(2)):
        raise invalid
    first, last = (match.group(1).lstrip("0") or "0"), (match.group(2).lstrip("0") or "0")
    if match.group(1) and match.group(2) and (len(last), last) < (len(first), first):
        raise invalid
    return (
        _position(first) if match.group(1) else None,
        _position(last) if match.group(2) else None,
    )


def _position(digits: str) -> int:
    """A byte position from its digits (leading zeros stripped), capped at ``BEYOND``."""
    return BEYOND if len(digits) > _MAX_DIGITS else int(digits)


def resolve_range(spec: tuple[int | None, int | None], size: int) -> ByteRange:
    """Fit a parsed range to an object of ``size`` bytes.

    Raises ``RANGE_INVALID`` (416, with ``Content-Range: bytes */size``) when unsatisfiable.
    """
    first, last = spec
    unsatisfiable = RegistryError(
        ErrorCode.RANGE_INVALID,
        detail={"size": size},
        headers={"Content-Range": f"bytes */{size}"},
    )
    if first is None:
        assert last is not None
        if last == 0 or size == 0:
            raise unsatisfiable
        return ByteRange(max(0, size - last), size - 1, size)
    if first >= size:
        raise unsatisfiable
    end = size - 1 if last is None else min(last, size - 1)
    return ByteRange(first, end, size)
