"""Regenerate the console's screenshots in docs/console/ (python scripts/screenshots.py).

Starts a throw-away mirror with auth on 127.0.0.1, pushes one image with skopeo, and photographs
the main pages in headless Debian chromium (the same browser the console's tests use).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

from mirror.app.build import build_app  # noqa: E402
from mirror.config import load_config  # noqa: E402
from mirror.testing.images import build_image  # noqa: E402
from mirror.testing.loopback import loopback_socket, serve_on_loopback  # noqa: E402
from tests.integration.browser import chromium  # noqa: E402
from tests.peers.skopeo import skopeo_copy  # noqa: E402

OUT = ROOT / "docs" / "console"


def photograph(base: str, registry: str, token: str, work: Path) -> None:
    """Sign in, seed a repository and a policy, save one PNG per page."""
    layout = work / "layout"
    build_image(layout, "v1", [b"base layer" * 3000, b"app layer" * 900])
    with chromium(1280, 900) as driver:
        driver.get(f"{base}/console/login")
        driver.find_element(By.ID, "username").send_keys("admin/admin")
        driver.save_screenshot(str(OUT / "sign-in.png"))
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        driver.find_element(By.ID, "new-name").send_keys("shop/web")
        driver.find_element(By.XPATH, "//button[.='Create repository']").click()
        skopeo_copy(
            f"oci:{layout}:v1",
            f"docker://{registry}/admin/shop/web:v1",
            "--dest-tls-verify=false",
            f"--dest-creds=admin/admin:{token}",
        )
        driver.refresh()
        driver.save_screenshot(str(OUT / "repository.png"))
        driver.get(f"{base}/console/t/admin/repositories")
        driver.save_screenshot(str(OUT / "repositories.png"))
        driver.get(f"{base}/console/retention")
        driver.find_element(By.ID, "new-policy-name").send_keys("short-lived")
        driver.find_element(By.ID, "new-np").send_keys("14")
        driver.find_element(By.ID, "new-ex").send_keys("release-*")
        driver.find_element(By.XPATH, "//button[.='Create policy']").click()
        driver.find_element(By.ID, "add-short-lived").send_keys("admin/shop/web")
        driver.find_element(By.XPATH, "//button[.='+ Add repository']").click()
        driver.find_element(By.XPATH, "//button[.='Run a dry run now']").click()
        full_page(driver, OUT / "retention.png")
        driver.get(f"{base}/console/t/admin/policies")
        driver.find_element(By.ID, "policy-name").send_keys("devs")
        driver.find_element(By.ID, "policy-statements").send_keys(
            "allow group devs to use repos in tenancy\nallow group devs to frob repos"
        )
        driver.find_element(By.XPATH, "//button[.='Save policy']").click()
        driver.save_screenshot(str(OUT / "policy-error.png"))
        for i in range(4):  # some traffic for the dashboard's charts
            skopeo_copy(
                f"docker://{registry}/admin/shop/web:v1",
                f"dir:{work / f'pull-{i}'}",
                "--src-tls-verify=false",
                f"--src-creds=admin/admin:{token}",
            )
            time.sleep(1.5)
        driver.get(f"{base}/console/cache")
        full_page(driver, OUT / "cache.png")
        driver.get(f"{base}/console/t/admin/quota")
        for field, limit in (("limit-bytes", "1048576"), ("limit-repositories", "20")):
            driver.find_element(By.ID, field).clear()
            driver.find_element(By.ID, field).send_keys(limit)
        driver.find_element(By.XPATH, "//button[.='Save limits']").click()
        driver.save_screenshot(str(OUT / "quota.png"))


def full_page(driver: WebDriver, path: Path) -> None:
    """Save the whole page, however long, at the window's width."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, int(height) + 100))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


async def main() -> None:
    """Serve a mirror on loopback for as long as the photographs take."""
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        listener = loopback_socket()
        port = listener.getsockname()[1]
        config = load_config(
            overrides={
                "server": {"listen": f"127.0.0.1:{port}"},
                "storage": {"data_dir": str(work / "data")},
                "encryption": {"kek_file": str(work / "mirror.kek")},
                "upstreams": [{"host": "docker.io", "url": "http://127.0.0.1:9"}],
                "auth": {"enabled": True, "hash_cost": 256, "registry_hosts": ["localhost"]},
                # Samples every second, so the dashboard has lines by the time it is shown.
                "console": {"sample_interval": 1},
            },
            environ={},
        )
        said: list[str] = []
        async with serve_on_loopback(build_app(config, announce=said.append), listener) as url:
            token = said[0].rsplit(" ", 1)[1]
            await asyncio.to_thread(photograph, url, f"localhost:{port}", token, work)
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
