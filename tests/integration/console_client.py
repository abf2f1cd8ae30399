"""A console user over HTTP: signs in with the form (its CSRF token read from the page) and
posts forms with the session's CSRF token, as a browser does."""

from __future__ import annotations

import re

import aiohttp

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, html
    return found.group(1)


class ConsoleUser:
    """One browser's cookie jar against one mirror."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def sign_in(self, username: str, token: str) -> int:
        async with self.http.get(f"{self.base}/console/login") as resp:
            login_csrf = csrf_of(await resp.text())
        form = {"csrf": login_csrf, "username": username, "token": token}
        async with self.http.post(f"{self.base}/console/login", data=form) as resp:
            html = await resp.text()
            if resp.status == 200:
                self.csrf = csrf_of(html)
            return resp.status

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(f"{self.base}{path}", allow_redirects=False) as resp:
            return resp.status, await resp.text()

    async def post(
        self, path: str, form: dict[str, str], *, csrf: str | None = None
    ) -> tuple[int, str]:
        data = {"csrf": self.csrf if csrf is None else csrf, **form}
        async with self.http.post(f"{self.base}{path}", data=data, allow_redirects=False) as resp:
            return resp.status, await resp.text()
