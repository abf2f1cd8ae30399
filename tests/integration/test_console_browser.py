"""The console end to end in a real browser (headless Debian chromium): sign in, create a
repository, push an image with skopeo, see it and its layers, make it public, create a
retention policy, attach the repository, dry-run and read the reasons, delete with the
confirmation step, sign out; another tenancy's user sees none of it and her forged post is
refused.

Selenium is blocking: the browser runs in a thread while the mirror serves in the loop."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from mirror.db.identity.records import ADMINISTRATORS
from mirror.testing.images import build_image
from tests.peers.skopeo import skopeo_copy

from .browser import chromium, require_chromium
from .conftest import AuthMirror, AuthMirrorFactory

pytestmark = pytest.mark.integration

UPSTREAMS = {"127.0.0.1:9": "http://127.0.0.1:9"}


def sign_in(driver: WebDriver, base: str, login: str, token: str) -> None:
    driver.get(f"{base}/console/login")
    driver.find_element(By.ID, "username").send_keys(login)
    driver.find_element(By.ID, "token").send_keys(token)
    button = driver.find_element(By.CSS_SELECTOR, "form button[type=submit]")
    button.click()
    wait_for_next_page(driver, button)
    assert "/console/login" not in driver.current_url


def wait_for_next_page(driver: WebDriver, left: WebElement) -> None:
    """Wait until the page that held `left` is gone and the next one has loaded, so no lookup
    finds an element of the page being left (Chromium 156 can return from a click before the
    navigation begins)."""
    WebDriverWait(driver, 10).until(left_behind(left))
    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def left_behind(left: WebElement) -> Callable[[WebDriver], bool]:
    """`staleness_of`, also when the driver says so in other words: mid-navigation Chromium
    answers a lookup of the old page's node with "Node with given id does not belong to the
    document", which is not a StaleElementReferenceException and escaped the wait."""
    stale = staleness_of(left)

    def gone(driver: WebDriver) -> bool:
        try:
            return stale(driver)
        except WebDriverException as error:
            if "does not belong to the document" in (error.msg or ""):
                return True
            raise

    return gone


def click(driver: WebDriver, text: str) -> None:
    """Every console button submits a form: click it and wait for the page it leads to."""
    button = driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']")
    button.click()
    wait_for_next_page(driver, button)


def follow(driver: WebDriver, text: str) -> None:
    link = driver.find_element(By.LINK_TEXT, text)
    link.click()
    wait_for_next_page(driver, link)


def admin_journey(driver: WebDriver, mirror: AuthMirror, layout: Path) -> None:
    base = mirror.node_url
    sign_in(driver, base, "admin/admin", mirror.admin_token)
    assert "Repositories of admin" in driver.page_source
    driver.find_element(By.ID, "new-name").send_keys("app")
    click(driver, "Create repository")
    assert "admin/app" in driver.find_element(By.TAG_NAME, "h1").text
    assert "No images yet" in driver.page_source
    skopeo_copy(
        f"oci:{layout}:v1",
        f"docker://{mirror.host}/admin/app:v1",
        "--dest-tls-verify=false",
        f"--dest-creds=admin/admin:{mirror.admin_token}",
    )
    driver.refresh()
    assert len(driver.find_elements(By.CSS_SELECTOR, "tr.layer")) == 2
    pull = driver.find_element(By.ID, "pull-1").get_attribute("value") or ""
    # The registry face (auth.registry_hosts), not the address the console was opened at.
    assert pull == f"docker pull {mirror.host}/admin/app:v1"
    click(driver, "Make public")
    assert driver.find_element(By.ID, "visibility").text == "public"
    driver.get(f"{base}/console/t/admin/repositories")
    row = driver.find_element(By.XPATH, "//tr[td/a[text()='app']]").text
    assert "hosted" in row and "public" in row and " 1 " in f" {row} "
    # Retention: a custom policy, the repository attached, a dry run with its reasons.
    driver.get(f"{base}/console/retention")
    driver.find_element(By.ID, "new-policy-name").send_keys("short")
    driver.find_element(By.ID, "new-np").send_keys("30")
    driver.find_element(By.ID, "new-ex").send_keys("release-*")
    click(driver, "Create policy")
    driver.find_element(By.ID, "add-short").send_keys("admin/app")
    click(driver, "+ Add repository")
    section = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=policy-short]")
    assert "admin/app" in section.text
    click(driver, "Run a dry run now")
    report = driver.find_element(By.ID, "dry-run-report")
    line = report.find_element(By.XPATH, ".//tr[td[contains(., 'admin/app@')]]").text
    assert "short" in line and "keep" in line
    assert "30" in line or "pulled" in line  # the reason names its rule's facts
    # Delete, with the confirmation step.
    driver.get(f"{base}/console/t/admin/repositories/app")
    follow(driver, "Delete…")
    driver.find_element(By.ID, "confirm").send_keys("app")
    click(driver, "Delete repository")
    assert "No repositories yet" in driver.page_source
    click(driver, "Sign out")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Sign in"
    driver.get(f"{base}/console/t/admin/repositories")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Sign in"


def outsider_journey(driver: WebDriver, mirror: AuthMirror, login: str, token: str) -> None:
    base = mirror.node_url
    sign_in(driver, base, login, token)
    driver.get(f"{base}/console/t/admin/repositories/kept")
    assert "DENIED" in driver.page_source and "kept" not in driver.title
    driver.get(f"{base}/console/t/beta/repositories")
    # A forged form (her own valid CSRF token) posted at another tenancy's repository.
    csrf = driver.find_element(By.NAME, "csrf").get_attribute("value")
    page = driver.find_element(By.TAG_NAME, "html")
    driver.execute_script(
        "const f = document.createElement('form'); f.method = 'post';"
        "f.action = '/console/t/admin/repositories/kept/visibility';"
        "for (const [k, v] of [['csrf', arguments[0]], ['public', 'true']]) {"
        "  const i = document.createElement('input'); i.type = 'hidden'; i.name = k;"
        "  i.value = v; f.appendChild(i); }"
        "document.body.appendChild(f); f.submit();",
        csrf,
    )
    wait_for_next_page(driver, page)
    assert "DENIED" in driver.page_source


@pytest.fixture
async def mirror(auth_mirror_factory: AuthMirrorFactory) -> AuthMirror:
    require_chromium()
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo")
    return await auth_mirror_factory(UPSTREAMS)


async def test_an_administrator_runs_the_whole_journey(mirror: AuthMirror, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    build_image(layout, "v1", [b"first layer" * 100, b"second layer" * 200])

    def journey() -> None:
        with chromium() as driver:
            admin_journey(driver, mirror, layout)

    await asyncio.to_thread(journey)


async def test_another_tenancy_sees_nothing_and_a_forged_post_is_refused(
    mirror: AuthMirror,
) -> None:
    now = mirror.mirror.clock.now()
    mirror.identity.create_repository("admin", "kept", now)
    login, token = mirror.user("beta", "eve", ADMINISTRATORS)

    def journey() -> None:
        with chromium() as driver:
            outsider_journey(driver, mirror, login, token)

    await asyncio.to_thread(journey)
    record = mirror.identity.repository("admin", "kept")
    assert record is not None and not record.public
