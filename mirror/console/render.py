"""Rendering pages: Jinja2 templates shipped in the package, autoescaped, one layout."""

from __future__ import annotations

import datetime
from typing import Any

import jinja2
from aiohttp import web

from mirror.console.keys import TEMPLATES
from mirror.console.viewer import Viewer


def environment() -> jinja2.Environment:
    """The template environment (HTML autoescaped, undefined names are errors)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mirror.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = when
    env.filters["size"] = human_size
    return env


def when(value: float | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS UTC``, or ``never``."""
    if value is None:
        return "never"
    moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def human_size(value: int | None) -> str:
    """Bytes in binary units (``1.5 MiB``)."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def page(
    request: web.Request,
    template: str,
    who: Viewer | None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """The page ``template`` for ``who`` (``None``: not signed in) with ``context``."""
    env = request.app[TEMPLATES]
    html = env.get_template(template).render(
        who=who, csrf=who.session.csrf if who and who.session else "", **context
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
