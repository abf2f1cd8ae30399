"""The admin API, version 1: retention policies, runs and the cache size (JSON in and out).

With auth enabled only system administrators (the admin tenancy's administrators) may use
it; without auth it is open, like the rest of a loopback or node-local mirror.

    GET    /admin/v1/retention/policies
    POST   /admin/v1/retention/policies                               {"name": ..., criteria}
    GET    /admin/v1/retention/policies/{policy}
    PATCH  /admin/v1/retention/policies/{policy}                      {criteria to change}
    DELETE /admin/v1/retention/policies/{policy}
    PUT    /admin/v1/retention/policies/{policy}/repositories/{repo}  {"move": true} optional
    DELETE /admin/v1/retention/policies/{policy}/repositories/{repo}
    POST   /admin/v1/retention/runs                                   {"dry_run": true}
    GET    /admin/v1/retention/capacity
    GET    /admin/v1/retention/audit                                  the audit log (a tier's whole)
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from mirror.auth.access import RepoRef
from mirror.errors import ErrorCode, RegistryError
from mirror.retention.names import resolve_policy_repository
from mirror.retention.policy import parse_edit, parse_policy
from mirror.retention.report import json_chunks
from mirror.retention.service import RetentionService
from mirror.web.admin.identity import as_system_admin, body
from mirror.web.keys import AUTH, RETENTION, SERVICES

PREFIX = "/admin/v1/retention"


def retention(request: web.Request) -> RetentionService:
    """The retention service, for a system administrator when auth is enabled."""
    if AUTH in request.app:
        as_system_admin(request)
    return request.app[RETENTION]


def repository(request: web.Request) -> str:
    """The ``{repo}`` path part as policies name it: a hosted repository ``<tenancy>/<repo>``
    as it is, anything else resolved like a client's repository name to ``HOST/REPO`` (so
    ``library/alpine`` names the default upstream's repository)."""
    return policy_repository(request.app, request.match_info["repo"])


def policy_repository(app: web.Application, name: str) -> str:
    """A repository as a client names it, as policies name it (see :func:`repository`)."""
    return resolve_policy_repository(app[SERVICES].router, name, hosted_names(app))


def hosted_names(app: web.Application) -> Callable[[str], bool]:
    """Whether a name is a hosted repository of an existing tenancy (auth on)."""
    if AUTH not in app:
        return lambda _: False
    auth = app[AUTH]

    def hosted(name: str) -> bool:
        tenancy, sep, repo = name.partition("/")
        if not sep or auth.identity.tenancy(tenancy) is None:
            return False
        return auth.resolver.is_hosted(RepoRef(tenancy, repo, name))

    return hosted


async def list_policies(request: web.Request) -> web.Response:
    """``GET .../policies``: every policy (the global one first)."""
    policies = [p.as_json() for p in retention(request).policies()]
    return web.json_response({"policies": policies})


async def create_policy(request: web.Request) -> web.Response:
    """``POST .../policies``: create a custom policy (201); POLICY_INVALID, POLICY_CONFLICT."""
    created = retention(request).create(parse_policy(await body(request)))
    return web.json_response(created.as_json(), status=201)


async def get_policy(request: web.Request) -> web.Response:
    """``GET .../policies/{policy}``: one policy; ``POLICY_UNKNOWN``."""
    return web.json_response(retention(request).policy(request.match_info["policy"]).as_json())


async def edit_policy(request: web.Request) -> web.Response:
    """``PATCH .../policies/{policy}``: change the criteria or exempt tags given in the body."""
    edit = parse_edit(await body(request))
    edited = retention(request).edit(request.match_info["policy"], edit)
    return web.json_response(edited.as_json())


async def delete_policy(request: web.Request) -> web.Response:
    """``DELETE .../policies/{policy}``: its repositories return to the global policy (204)."""
    retention(request).delete(request.match_info["policy"])
    return web.Response(status=204)


async def attach(request: web.Request) -> web.Response:
    """``PUT .../repositories/{repo}``: put a repository under the policy (``move`` to take it from
    another; ``POLICY_CONFLICT`` otherwise)."""
    move = (await body(request)).get("move", False)
    if not isinstance(move, bool):
        raise RegistryError(ErrorCode.POLICY_INVALID, "move must be true or false")
    policy = request.match_info["policy"]
    attached = retention(request).attach(policy, repository(request), move=move)
    return web.json_response(attached.as_json())


async def detach(request: web.Request) -> web.Response:
    """``DELETE .../repositories/{repo}``: return the repository to the global policy."""
    policy = request.match_info["policy"]
    return web.json_response(retention(request).detach(policy, repository(request)).as_json())


async def run(request: web.Request) -> web.StreamResponse:
    """``POST .../runs``: apply the policies now, or only report with ``dry_run``."""
    dry_run = (await body(request)).get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise RegistryError(ErrorCode.POLICY_INVALID, "dry_run must be true or false")
    if dry_run:
        return await _stream_dry_run(request)
    report = await retention(request).run(dry_run=dry_run, trigger="api")
    # The report's lines are read back from where the run spilled them, as they are sent.
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    async for chunk in json_chunks(report.head(), report.batches()):
        await response.write(chunk.encode())
    await response.write_eof()
    return response


async def _stream_dry_run(request: web.Request) -> web.StreamResponse:
    """A dry run's report streamed as it is judged (the same JSON, one repository in memory)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    async with retention(request).dry_run(trigger="api") as dry:
        await response.prepare(request)
        async for chunk in json_chunks(dry.head, dry.batches):
            await response.write(chunk.encode())
    await response.write_eof()
    return response


async def capacity(request: web.Request) -> web.Response:
    """``GET .../capacity``: the size limit, its watermarks and the bytes counted."""
    limit = retention(request).capacity
    if limit is None:
        return web.json_response({"max_size": 0})
    return web.json_response(
        {
            "max_size": limit.max_size,
            "high_watermark_bytes": limit.high_bytes,
            "low_watermark_bytes": limit.low_bytes,
            "used": limit.used,
            "in_flight": limit.in_flight,
        }
    )


async def audit(request: web.Request) -> web.Response:
    """``GET .../audit``: runs and deletions with their reasons, oldest first; on a tier every
    replica's, each line naming the ``replica`` that acted."""
    return web.json_response({"events": retention(request).audit_events()})


def add_admin_routes(app: web.Application) -> None:
    """Register the admin API."""
    r = app.router
    policies = f"{PREFIX}/policies"
    one = f"{policies}/{{policy}}"
    repos = f"{one}/repositories/{{repo:.+}}"
    r.add_get(policies, list_policies)
    r.add_post(policies, create_policy)
    r.add_get(one, get_policy)
    r.add_patch(one, edit_policy)
    r.add_delete(one, delete_policy)
    r.add_put(repos, attach)
    r.add_delete(repos, detach)
    r.add_post(f"{PREFIX}/runs", run)
    r.add_get(f"{PREFIX}/capacity", capacity)
    r.add_get(f"{PREFIX}/audit", audit)
