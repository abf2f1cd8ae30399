"""Long lists come in pages: repositories, a repository's images and the retention audit log,
``?page=N`` and ``?n=`` items a page, with Previous/Next links; a bad number is a 400."""

from __future__ import annotations

import re

import pytest

from mirror.db.metadata import ManifestRecord, TagRecord
from mirror.hosted.names import hosted_key
from mirror.oci.digest import Digest

from .conftest import AuthMirror, AuthMirrorFactory
from .console_client import ConsoleUser

UPSTREAMS = {"127.0.0.1:9": "http://127.0.0.1:9"}
KIND = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
async def mirror(auth_mirror_factory: AuthMirrorFactory) -> AuthMirror:
    return await auth_mirror_factory(UPSTREAMS)


async def _admin(mirror: AuthMirror) -> ConsoleUser:
    admin = ConsoleUser(mirror.node_url)
    assert await admin.sign_in("admin/admin", mirror.admin_token) == 200
    return admin


def _names(html: str) -> list[str]:
    return re.findall(r'<td><a href="/console/t/acme/repositories/([^"]+)">', html)


async def test_repositories_come_fifty_a_page_and_n_changes_the_size(mirror: AuthMirror) -> None:
    now = mirror.mirror.clock.now()
    mirror.identity.create_tenancy("acme", now)
    made = sorted(f"app{i:02d}" for i in range(53))
    for name in made:
        mirror.identity.create_repository("acme", name, now)
    admin = await _admin(mirror)
    try:
        status, html = await admin.get("/console/t/acme/repositories")
        assert status == 200 and _names(html) == made[:50]
        assert "Page 1 of 2 (53 in all)" in html and 'rel="prev"' not in html
        link = re.search(r'<a href="([^"]+)" rel="next">', html)
        assert link is not None
        status, html = await admin.get(link.group(1).replace("&amp;", "&"))
        assert status == 200 and _names(html) == made[50:] and 'rel="next"' not in html
        status, html = await admin.get("/console/t/acme/repositories?n=20&page=2")
        assert _names(html) == made[20:40] and "Page 2 of 3" in html
        # The links keep the page size.
        assert 'href="/console/t/acme/repositories?n=20&amp;page=3" rel="next"' in html
        for bad in ("page=0", "page=two", "n=0", "n=501", "page=-1"):
            status, html = await admin.get(f"/console/t/acme/repositories?{bad}")
            assert status == 400 and "PAGINATION_NUMBER_INVALID" in html, bad
        # Past the last page: the last page.
        status, html = await admin.get("/console/t/acme/repositories?page=9")
        assert status == 200 and _names(html) == made[50:]
    finally:
        await admin.close()


async def test_a_repository_s_images_come_in_pages(mirror: AuthMirror) -> None:
    now = mirror.mirror.clock.now()
    mirror.identity.create_tenancy("acme", now)
    mirror.identity.create_repository("acme", "app", now)
    metadata = mirror.mirror.services.metadata
    digests = []
    for i in range(5):
        body = b'{"schemaVersion":2,"n":%d}' % i
        digest = Digest.of(body)
        digests.append(str(digest))
        metadata.set_manifest(digest, ManifestRecord(KIND, len(body), (), now))
        metadata.set_tag(hosted_key("acme"), "app", f"v{i}", TagRecord(str(digest), KIND, 1, now))
    admin = await _admin(mirror)
    try:
        seen: set[str] = set()
        for number in (1, 2, 3):
            status, html = await admin.get(f"/console/t/acme/repositories/app?n=2&page={number}")
            assert status == 200 and f"Page {number} of 3 (5 in all)" in html
            shown = {d for d in digests if d in html}
            assert len(shown) == (2 if number < 3 else 1) and not shown & seen
            seen |= shown
        assert seen == set(digests)
    finally:
        await admin.close()


async def test_the_audit_log_comes_in_pages_newest_first(mirror: AuthMirror) -> None:
    runs = []
    for _ in range(4):
        report = await mirror.mirror.retention.run(dry_run=False)
        runs.append(report.run_id)
        mirror.mirror.clock.advance(1)
    admin = await _admin(mirror)
    try:
        status, html = await admin.get("/console/retention?n=3")
        assert status == 200 and "Page 1 of 2 (4 in all)" in html
        assert [r for r in reversed(runs) if r in html] == list(reversed(runs))[:3]
        status, html = await admin.get("/console/retention?n=3&page=2")
        assert status == 200 and [r for r in runs if r in html] == runs[:1]
    finally:
        await admin.close()
