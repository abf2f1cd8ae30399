"""Accessibility basics of the console's pages, checked by axe-core (vendored in tests/vendor,
MPL-2.0) in the same headless chromium: labels, contrast, landmarks, names of controls
(WCAG 2 A and AA rules); and the keyboard's path through the sign-in form."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from .browser import chromium, require_chromium
from .conftest import AuthMirror, AuthMirrorFactory
from .test_console_browser import click, sign_in

pytestmark = pytest.mark.integration

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe.min.js"
UPSTREAMS = {"127.0.0.1:9": "http://127.0.0.1:9"}


def violations(driver: WebDriver) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA violations on the current page (WebDriver scripts are not
    bound by the page's Content-Security-Policy)."""
    driver.execute_script(AXE.read_text())
    found = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa']})"
        ".then(r => done(JSON.stringify(r.violations)), e => done(JSON.stringify([String(e)])));"
    )
    result: list[dict[str, Any]] = json.loads(found)
    return result


def summary(found: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    return [(v["id"], [n["html"][:80] for n in v["nodes"]][:3]) for v in found]


def audit(driver: WebDriver, mirror: AuthMirror) -> dict[str, list[tuple[str, list[str]]]]:
    base = mirror.node_url
    # The checker itself, first: an unlabelled field is a violation it must see.
    driver.get("data:text/html,<html lang=en><title>t</title><main><input></main></html>")
    assert "label" in [v["id"] for v in violations(driver)]
    pages: dict[str, list[tuple[str, list[str]]]] = {}
    driver.get(f"{base}/console/login")
    pages["sign-in"] = summary(violations(driver))
    sign_in(driver, base, "admin/admin", mirror.admin_token)
    driver.find_element(By.ID, "new-name").send_keys("app")
    click(driver, "Create repository")
    pages["repository"] = summary(violations(driver))
    driver.get(f"{base}/console/t/admin/repositories")
    pages["repositories"] = summary(violations(driver))
    driver.get(f"{base}/console/t/admin/repositories/app/delete")
    pages["delete"] = summary(violations(driver))
    driver.get(f"{base}/console/retention")
    driver.find_element(By.ID, "new-policy-name").send_keys("short")
    click(driver, "Create policy")
    click(driver, "Run a dry run now")
    pages["retention"] = summary(violations(driver))
    driver.get(f"{base}/console/cache")
    pages["cache"] = summary(violations(driver))
    driver.get(f"{base}/console/tenancies")
    driver.find_element(By.ID, "new-tenancy").send_keys("gamma")
    click(driver, "Create tenancy")
    driver.get(f"{base}/console/tenancies")
    pages["tenancies"] = summary(violations(driver))
    driver.get(f"{base}/console/t/gamma/quota")
    assert "Quota of gamma" in driver.page_source and "Save limits" in driver.page_source
    pages["quota"] = summary(violations(driver))
    driver.get(f"{base}/console/tenancies/gamma/delete")
    assert "Delete tenancy gamma?" in driver.page_source
    pages["tenancy-delete"] = summary(violations(driver))
    return pages


@pytest.fixture
async def mirror(auth_mirror_factory: AuthMirrorFactory) -> AuthMirror:
    require_chromium()
    return await auth_mirror_factory(UPSTREAMS)


async def test_every_main_page_passes_axe_core(mirror: AuthMirror) -> None:
    def run() -> dict[str, list[tuple[str, list[str]]]]:
        with chromium() as driver:
            return audit(driver, mirror)

    pages = await asyncio.to_thread(run)
    assert set(pages) == {
        "sign-in",
        "repository",
        "repositories",
        "delete",
        "retention",
        "cache",
        "tenancies",
        "quota",
        "tenancy-delete",
    }
    assert {name: found for name, found in pages.items() if found} == {}


async def test_the_keyboard_starts_in_the_user_field_and_tabs_through_the_form(
    mirror: AuthMirror,
) -> None:
    def run() -> list[str]:
        with chromium() as driver:
            driver.get(f"{mirror.node_url}/console/login")
            order = [driver.switch_to.active_element.get_attribute("id") or ""]
            for _ in range(4):
                driver.switch_to.active_element.send_keys(Keys.TAB)
                active = driver.switch_to.active_element
                order.append(active.get_attribute("id") or active.text.split("\n")[0])
            return order

    order = await asyncio.to_thread(run)
    # Focus starts in the user field (autofocus), then the token, then the button; past the
    # end it wraps round to the skip link, the first thing on every page.
    assert order[:3] == ["username", "token", "Sign in"]
    assert "Skip to content" in order[3:]
