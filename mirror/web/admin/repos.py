"""The admin API, ``/admin/v1`` (JSON): policies, repositories and pull-through rules.

Repositories are managed by whoever the policies let ``manage`` them; policies and rules by
the tenancy's administrators.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mirror.auth.access import RepoRef
from mirror.auth.policy.grammar import Verb
from mirror.auth.principal import Principal
from mirror.auth.service import AuthService
from mirror.db.identity.records import (
    PullThroughRule,
    Repository,
    group_name,
    repository_name,
)
from mirror.db.identity.resources import is_rule_url
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.names import hosted_key
from mirror.hosted.repositories import HostedRecords
from mirror.web.admin.identity import (
    PREFIX,
    as_tenancy_admin,
    body,
    caller,
    deny,
    forget_rules,
    ok,
)
from mirror.web.admin.quota import add_quota_routes
from mirror.web.keys import AUTH, QUOTAS, SERVICES


async def list_policies(request: web.Request) -> web.Response:
    """``GET .../tenancies/{tenancy}/policies``: the tenancy's access policies."""
    auth, tenancy = as_tenancy_admin(request)
    policies = auth.identity.policies(tenancy)
    return ok({"policies": [{"name": p.name, "statements": list(p.statements)} for p in policies]})


async def put_policy(request: web.Request) -> web.Response:
    """Create or replace a policy: every statement parses, or nothing changes."""
    auth, tenancy = as_tenancy_admin(request)
    data = await body(request)
    name = group_name(request.match_info["policy"])
    statements = _statements(data.get("statements"))
    record = auth.identity.set_policy(tenancy, name, statements)
    return ok({"name": record.name, "statements": list(record.statements)})


async def delete_policy(request: web.Request) -> web.Response:
    """``DELETE .../policies/{policy}``: delete an access policy."""
    auth, tenancy = as_tenancy_admin(request)
    auth.identity.delete_policy(tenancy, request.match_info["policy"])
    return ok({"deleted": request.match_info["policy"]})


def _statements(value: object) -> tuple[str, ...]:
    """A policy's statements from request JSON: a list of strings (``REQUEST_INVALID``)."""
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise RegistryError(ErrorCode.REQUEST_INVALID, "statements: expected a list of strings")
    return tuple(value)


# Repositories -------------------------------------------------------------------------


def _repo_ref(tenancy: str, name: object) -> RepoRef:
    valid = repository_name(name)
    return RepoRef(tenancy, valid, f"{tenancy}/{valid}")


def _managing(request: web.Request, name: object) -> RepoRef:
    auth, principal = caller(request)
    return managed_repository(auth, principal, request.match_info["tenancy"], name)


def managed_repository(
    auth: AuthService, principal: Principal, tenancy: str, name: object
) -> RepoRef:
    """``tenancy``'s repository ``name`` when ``principal`` may manage it (``DENIED``;
    ``NAME_INVALID``, ``TENANCY_UNKNOWN``): the API's and the console's one check."""
    auth.identity.require_tenancy(tenancy)
    ref = _repo_ref(tenancy, name)
    if not auth.authorizer.permits(principal, ref, Verb.MANAGE):
        raise deny()
    return ref


def inspectable_repositories(
    auth: AuthService, principal: Principal, tenancy: str
) -> list[Repository]:
    """``tenancy``'s repositories that ``principal`` may inspect (``TENANCY_UNKNOWN``)."""
    auth.identity.require_tenancy(tenancy)
    return [
        r
        for r in auth.identity.repositories(tenancy)
        if auth.authorizer.permits(principal, _repo_ref(tenancy, r.name), Verb.INSPECT)
    ]


def create_managed(app: web.Application, ref: RepoRef, public: bool) -> Repository:
    """Create a repository the caller may manage (a new hosted one must fit the quota)."""
    auth = app[AUTH]
    if auth.resolver.is_hosted(ref) and auth.identity.repository(ref.tenancy, ref.name) is None:
        app[QUOTAS].admit_repository(ref.tenancy, ref.name)
    return auth.identity.create_repository(ref.tenancy, ref.name, auth.tokens.now(), public=public)


def delete_managed(app: web.Application, ref: RepoRef) -> None:
    """Forget a repository the caller may manage: its settings and links to cached content
    (the next pull through it proves access again with its upstream); hosted, its content."""
    auth = app[AUTH]
    auth.identity.delete_repository(ref.tenancy, ref.name)
    metadata = app[SERVICES].metadata
    for upstream, repo in auth.resolver.records_of(ref):
        metadata.unlink(upstream, repo)
    if auth.resolver.is_hosted(ref):
        forget_hosted(metadata, ref.tenancy, ref.name, auth.tokens.now())
        app[QUOTAS].forget_repository(ref.tenancy, ref.name)


def _public(value: object) -> bool:
    if not isinstance(value, bool):
        raise RegistryError(ErrorCode.REQUEST_INVALID, "public: expected true or false")
    return value


async def list_repositories(request: web.Request) -> web.Response:
    """``GET .../repositories``: the repositories the caller may inspect."""
    auth, principal = caller(request)
    shown = [
        {"name": r.name, "public": r.public, "created_at": r.created_at}
        for r in inspectable_repositories(auth, principal, request.match_info["tenancy"])
    ]
    return ok({"repositories": shown})


async def create_repository(request: web.Request) -> web.Response:
    """``POST .../repositories``: create a repository (private unless ``public``)."""
    data = await body(request)
    ref = _managing(request, data.get("name"))
    record = create_managed(request.app, ref, _public(data.get("public", False)))
    return ok({"name": record.name, "public": record.public}, 201)


async def update_repository(request: web.Request) -> web.Response:
    """``PATCH .../repositories/{name}``: make it public or private."""
    ref = _managing(request, request.match_info["name"])
    public = _public((await body(request)).get("public"))
    record = request.app[AUTH].identity.set_public(ref.tenancy, ref.name, public)
    return ok({"name": record.name, "public": record.public})


async def delete_repository(request: web.Request) -> web.Response:
    """Forget the repository's settings and its links to cached content: the next pull through
    it proves access again with its upstream."""
    ref = _managing(request, request.match_info["name"])
    delete_managed(request.app, ref)
    return ok({"deleted": ref.name})


def forget_hosted(metadata: HostedRecords, tenancy: str, repo: str, now: float) -> None:
    """A deleted hosted repository's content: its links (the collector reclaims what no other
    repository refers to), tags and catalog entry. Gone for good: no upstream has it."""
    key = hosted_key(tenancy)
    metadata.unlink(key, repo)
    for upstream, name, tag, _ in list(metadata.tags()):
        if (upstream, name) == (key, repo):
            metadata.delete_tag(key, repo, tag, now)
    for upstream, name, digest in list(metadata.pulls()):
        if (upstream, name) == (key, repo):
            metadata.evict_image(key, repo, digest, ())
    metadata.forget_empty_repositories([(key, repo)])


# Pull-through rules -------------------------------------------------------------------


async def list_rules(request: web.Request) -> web.Response:
    """``GET .../rules``: the tenancy's pull-through rules (never their passwords)."""
    auth, tenancy = as_tenancy_admin(request)
    return ok({"rules": [r.public() for r in auth.identity.rules(tenancy)]})


async def create_rule(request: web.Request) -> web.Response:
    """``POST .../rules``: create a pull-through rule to an allowed upstream host."""
    auth, tenancy = as_tenancy_admin(request)
    data = await body(request)
    prefix, url, username, password = (
        _optional_string(data, key) for key in ("prefix", "url", "username", "password")
    )
    rule = await create_rule_in(auth, tenancy, prefix, url, username, password)
    return ok(rule.public(), 201)


async def create_rule_in(
    auth: AuthService,
    tenancy: str,
    prefix: str | None,
    url: str | None,
    username: str | None,
    password: str | None,
) -> PullThroughRule:
    """Create ``tenancy``'s rule ``prefix`` → ``url``, the host on the system administrator's
    allow-list (``REQUEST_INVALID``, ``DENIED``)."""
    if not prefix or not url:
        raise RegistryError(ErrorCode.REQUEST_INVALID, "prefix and url are required")
    rule = PullThroughRule(tenancy, prefix, url, username, password, auth.tokens.now())
    if not is_rule_url(url):
        raise RegistryError(ErrorCode.REQUEST_INVALID, "url: expected http(s)://host[:port]")
    await auth.upstreams.rule_hosts.admit(url)  # the system administrator's allow-list
    auth.identity.create_rule(rule)
    return rule


def _optional_string(data: dict[str, Any], key: str) -> str | None:
    """``data[key]``: a string or absent/null (``REQUEST_INVALID`` otherwise)."""
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise RegistryError(ErrorCode.REQUEST_INVALID, f"{key}: expected a string")
    return value


async def delete_rule(request: web.Request) -> web.Response:
    """Delete a rule and everything cached under its key (a rule created again starts empty)."""
    auth, tenancy = as_tenancy_admin(request)
    prefix = request.match_info["prefix"]
    forget_rules(request, [auth.identity.delete_rule(tenancy, prefix)])
    return ok({"deleted": prefix})


def add_resource_routes(app: web.Application) -> None:
    """Register the policies, repositories and rules half of the admin API."""
    r = app.router
    t = f"{PREFIX}/tenancies/{{tenancy}}"
    r.add_get(f"{t}/policies", list_policies)
    r.add_put(f"{t}/policies/{{policy}}", put_policy)
    r.add_delete(f"{t}/policies/{{policy}}", delete_policy)
    r.add_get(f"{t}/repositories", list_repositories)
    r.add_post(f"{t}/repositories", create_repository)
    r.add_patch(f"{t}/repositories/{{name:.+}}", update_repository)
    r.add_delete(f"{t}/repositories/{{name:.+}}", delete_repository)
    r.add_get(f"{t}/rules", list_rules)
    r.add_post(f"{t}/rules", create_rule)
    r.add_delete(f"{t}/rules/{{prefix:.+}}", delete_rule)
    add_quota_routes(app)
