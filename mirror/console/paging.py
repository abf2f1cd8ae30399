"""Long lists in pages: ``?page=N`` (from 1) and ``?n=`` items a page, with links to the
previous and next pages that keep the rest of the query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web

from mirror.errors import ErrorCode, RegistryError

T = TypeVar("T")

# Items a page unless ``?n=`` says otherwise, and the most ``?n=`` may ask for.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: its items, which page of how many, and the links around it."""

    items: list[T]
    number: int
    pages: int
    total: int
    previous: str | None
    next: str | None


def _number(request: web.Request, key: str, default: int, top: int) -> int:
    text = request.query.get(key)
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= top:
        raise RegistryError(
            ErrorCode.PAGINATION_NUMBER_INVALID,
            f"?{key}= must be a whole number from 1 to {top}",
            detail={key: text},
        )
    return int(text)


def _link(request: web.Request, key: str, number: int) -> str:
    query = request.rel_url.query.copy()
    query[key] = str(number)
    return str(request.rel_url.with_query(query))


def page_of(request: web.Request, items: Sequence[T], key: str = "page") -> Page[T]:
    """The page of ``items`` the request asks for (past the last page: the last one); a page
    number or size that is not a whole number in range is ``PAGINATION_NUMBER_INVALID``."""
    size = _number(request, "n", PAGE_SIZE, MAX_PAGE_SIZE)
    pages = max((len(items) + size - 1) // size, 1)
    number = min(_number(request, key, 1, 10**9), pages)
    start = (number - 1) * size
    return Page(
        list(items[start : start + size]),
        number,
        pages,
        len(items),
        _link(request, key, number - 1) if number > 1 else None,
        _link(request, key, number + 1) if number < pages else None,
    )
