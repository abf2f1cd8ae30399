"""Settings → Image retention policies: the global and custom policies, their criteria and
exempt tags, "+ Add repository" / remove, the cooling period, a dry run that lists each image
with the rule that keeps or deletes it, and the audit log. System administrators only, as in
the admin API (with auth off, read-only on loopback)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mirror.console.paging import page_of
from mirror.console.render import page
from mirror.console.viewer import Viewer, form_of, mirror_app, viewer
from mirror.errors import ErrorCode, RegistryError
from mirror.retention.policy import parse_edit, parse_policy
from mirror.retention.service import RetentionService
from mirror.web.admin.retention import policy_repository
from mirror.web.keys import RETENTION

PATH = "/console/retention"


def _retention(request: web.Request) -> tuple[Viewer, RetentionService]:
    who = viewer(request)
    if not who.system_admin:
        raise RegistryError(ErrorCode.DENIED, "retention policies are for system administrators")
    return who, mirror_app(request)[RETENTION]


def _criteria(data: dict[str, str]) -> dict[str, Any]:
    """Criteria from a form: empty days mean "not set"; exempt tags comma or space separated."""
    found: dict[str, Any] = {}
    for key in ("not_pulled_days", "not_tagged_days"):
        text = data.get(key, "").strip()
        found[key] = _days(key, text) if text else None
    tags = data.get("exempt_tags", "").replace(",", " ").split()
    found["exempt_tags"] = tags
    if data.get("match") in ("any", "all"):
        found["match"] = data["match"]
    return found


def _days(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RegistryError(ErrorCode.POLICY_INVALID, f"{key}: expected a number of days") from None


def _show(
    request: web.Request, who: Viewer, service: RetentionService, **extra: Any
) -> web.Response:
    audit = page_of(request, list(reversed(service.audit_events())))
    context: dict[str, Any] = {"report": None, "error": None, "status": 200} | extra
    status = context.pop("status")
    return page(
        request,
        "retention.html",
        who,
        status,
        policies=service.policies(),
        cooling_period=service.cooling_period,
        audit=audit,
        **context,
    )


async def overview(request: web.Request) -> web.Response:
    """``GET /console/retention``: every policy (the global one first) and the audit log."""
    who, service = _retention(request)
    return _show(request, who, service)


async def _changed(request: web.Request, change: Any) -> web.Response:
    """Apply ``change(service, form)``; a refused change is shown on the page with its reason."""
    who, service = _retention(request)
    data = await form_of(request, who)
    try:
        change(service, data)
    except RegistryError as exc:
        return _show(request, who, service, error=exc.message, status=exc.status)
    raise web.HTTPSeeOther(PATH)


async def create(request: web.Request) -> web.Response:
    """``POST .../policies``: a custom policy."""
    return await _changed(
        request,
        lambda s, d: s.create(parse_policy({"name": d.get("name", "").strip(), **_criteria(d)})),
    )


async def edit(request: web.Request) -> web.Response:
    """``POST .../policies/{policy}``: change its criteria and exempt tags."""
    name = request.match_info["policy"]
    return await _changed(request, lambda s, d: s.edit(name, parse_edit(_criteria(d))))


async def delete(request: web.Request) -> web.Response:
    """``POST .../policies/{policy}/delete``: its repositories return to the global policy."""
    name = request.match_info["policy"]
    return await _changed(request, lambda s, _: s.delete(name))


async def attach(request: web.Request) -> web.Response:
    """``POST .../policies/{policy}/repositories``: "+ Add repository"."""
    name, app = request.match_info["policy"], mirror_app(request)

    def change(service: RetentionService, data: dict[str, str]) -> None:
        repo = policy_repository(app, data.get("repository", "").strip())
        service.attach(name, repo, move=data.get("move") == "on")

    return await _changed(request, change)


async def detach(request: web.Request) -> web.Response:
    """``POST .../policies/{policy}/repositories/remove``: back to the global policy."""
    name = request.match_info["policy"]
    return await _changed(request, lambda s, d: s.detach(name, d.get("repository", "")))


async def dry_run(request: web.Request) -> web.Response:
    """``POST /console/retention/dry-run``: what a run would do now, image by image, and why."""
    who, service = _retention(request)
    await form_of(request, who)
    report = await service.run(dry_run=True, trigger="console")
    return _show(request, who, service, report=report.as_json())
