"""Where a repository name lives (tenancy, name in it, upstream) and what a caller may do.

A request is on one of two faces. The **registry face** (a request whose ``Host`` is one of
``auth.registry_hosts``, or every request when there is no default tenancy) addresses
``<tenancy>/<repo>``; a tenancy repository is pulled through the tenancy's rule with the
longest prefix. The **node-local face** (any other ``Host``, and every ``?ns=`` request)
names proxy repositories of the configured default tenancy, routed to a configured upstream
by the :class:`~mirror.upstream.routing.Router` and named ``<upstream>/<repo>`` in that
tenancy, whatever tenancies exist: a tenancy never shadows a node-local name. A tenancy
repository that no rule serves is **hosted**: its content is pushed, never pulled through.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirror.auth.policy.evaluate import allows
from mirror.auth.policy.grammar import Verb
from mirror.auth.principal import Principal
from mirror.db.identity.records import ADMINISTRATORS, RESERVED_TENANCIES, PullThroughRule
from mirror.db.identity.store import IdentityStore
from mirror.errors import ErrorCode, RegistryError
from mirror.hosted.names import hosted_key
from mirror.oci.names import validate_name
from mirror.upstream.routing import Router, Target

# Catalog entries of hosted repositories start with this (``hosted:<tenancy>/<repo>``).
HOSTED_PREFIX = hosted_key("")


@dataclass(frozen=True, slots=True)
class RepoRef:
    """A repository as policies see it: ``name`` inside ``tenancy``; ``path`` as requested.

    ``target`` is already known for proxy repositories of the default tenancy; a tenancy
    repository's target comes from its pull-through rule (:meth:`Resolver.rule_for`).
    """

    tenancy: str
    name: str
    path: str
    target: Target | None = None

    @property
    def proxy(self) -> bool:
        """Whether the name is a proxy repository (routed to a configured upstream)."""
        return self.target is not None


def host_name(host: str | None) -> str:
    """The host name of a ``Host`` header, without port, lower case (``""`` when absent)."""
    host = (host or "").strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    name, sep, port = host.rpartition(":")
    return (name if sep and port.isdigit() else host).rstrip(".")


class Resolver:
    """Resolves request paths to repositories and rules, on the face a request arrived at."""

    def __init__(
        self,
        store: IdentityStore,
        router: Router,
        default_tenancy: str,
        *,
        registry_hosts: tuple[str, ...] = (),
        reserved: frozenset[str] = frozenset(),
    ) -> None:
        self._store = store
        self._router = router
        self._default = default_tenancy
        self._registry_hosts = frozenset(host_name(h) for h in registry_hosts)
        self._first_registry_host = host_name(registry_hosts[0]) if registry_hosts else ""
        self._reserved = RESERVED_TENANCIES | reserved

    def on_registry_face(self, host: str | None, ns: str | None) -> bool:
        """Whether a request (its ``Host`` and ``?ns=``) addresses ``<tenancy>/<repo>``."""
        if ns is not None:
            return False
        return not self._default or host_name(host) in self._registry_hosts

    def registry_face(self, host: str) -> str:
        """The ``host[:port]`` clients address tenancy repositories by, seen from a request
        to ``host``: ``host`` itself on the registry face, else the first registry host on
        ``host``'s port."""
        if self.on_registry_face(host, None) or not self._first_registry_host:
            return host
        name = host_name(host)
        port = host[len(name) :] if host.lower().startswith(name) else ""
        return self._first_registry_host + port

    def locate(self, path: str, ns: str | None, host: str | None) -> RepoRef:
        """The repository a request path names on the face of ``host`` and ``ns``;
        ``NAME_UNKNOWN``/``NAME_INVALID``."""
        if self.on_registry_face(host, ns):
            return self._tenancy_repository(path)
        return self._proxy_repository(path, ns)

    def candidates(self, path: str) -> list[RepoRef]:
        """The repositories ``path`` names on every face (a token request says no face)."""
        found = []
        for locate in (self._tenancy_repository, lambda p: self._proxy_repository(p, None)):
            try:
                found.append(locate(path))
            except RegistryError:
                continue
        return found

    def _tenancy_repository(self, path: str) -> RepoRef:
        first, sep, rest = path.partition("/")
        if not sep or self._store.tenancy(first) is None:
            raise RegistryError(
                ErrorCode.NAME_UNKNOWN, "no tenancy for this name", detail={"name": path}
            )
        return RepoRef(first, validate_name(rest), path)

    def _proxy_repository(self, path: str, ns: str | None) -> RepoRef:
        if not self._default or self._store.tenancy(self._default) is None:
            raise RegistryError(
                ErrorCode.NAME_UNKNOWN, "no tenancy for this name", detail={"name": path}
            )
        target = self._router.resolve(path, ns)
        return RepoRef(self._default, f"{target.upstream}/{target.repo}", path, target)

    def check_tenancy_name(self, name: str) -> None:
        """Refuse (``REQUEST_INVALID``) a tenancy name that is a node-local name's first
        component (``library``, a configured upstream host or alias)."""
        if name in self._reserved:
            raise RegistryError(
                ErrorCode.REQUEST_INVALID, "reserved name, not a tenancy", detail={"tenancy": name}
            )

    def rule_for(self, ref: RepoRef) -> tuple[PullThroughRule, Target]:
        """The pull-through rule serving a tenancy repository and its upstream target."""
        for rule in sorted(self._store.rules(ref.tenancy), key=lambda r: -len(r.prefix)):
            if ref.name.startswith(rule.prefix + "/"):
                upstream_repo = ref.name[len(rule.prefix) + 1 :]
                return rule, Target(rule.key, upstream_repo, ref.path)
        raise RegistryError(
            ErrorCode.NAME_UNKNOWN,
            "no pull-through rule for this repository",
            detail={"name": ref.path},
        )

    def is_hosted(self, ref: RepoRef) -> bool:
        """Whether ``ref`` is a hosted repository: a tenancy repository no pull-through rule
        serves (its name is neither a rule's prefix nor under one)."""
        return not ref.proxy and not any(
            ref.name == rule.prefix or ref.name.startswith(rule.prefix + "/")
            for rule in self._store.rules(ref.tenancy)
        )

    def records_of(self, ref: RepoRef) -> list[tuple[str, str]]:
        """The ``(upstream key, repo)`` pairs a repository of ``ref.tenancy`` keeps cache
        records under: its tenancy's rules' keys, or (default tenancy) its proxy name. Never
        another tenancy's, even for the same upstream and repository."""
        found = [
            (rule.key, ref.name[len(rule.prefix) + 1 :])
            for rule in self._store.rules(ref.tenancy)
            if ref.name.startswith(rule.prefix + "/")
        ]
        if ref.tenancy == self._default:
            upstream, sep, repo = ref.name.partition("/")
            if sep and "@" not in upstream:
                found.append((upstream, repo))
        return found

    def catalog_path(self, name: str, host: str | None) -> str | None:
        """The path a catalog entry (``<upstream key>/<repo>``) is addressed by on the face of
        ``host``, or ``None`` when it is not reachable there (a deleted rule's leftovers, a
        tenancy repository on the node-local face, a proxy repository on the registry face).
        """
        registry = self.on_registry_face(host, None)
        if name.startswith(HOSTED_PREFIX):
            tenancy, _, repo = name[len(HOSTED_PREFIX) :].partition("/")
            hosted = registry and repo and self._store.tenancy(tenancy) is not None
            return f"{tenancy}/{repo}" if hosted else None
        key, at, rest = name.partition("@")
        if not at:
            # Proxy repositories, and rules stored before rule ids (keyed by their path).
            return name if not registry or self._is_tenancy_path(name) else None
        rule_id, _, repo = rest.partition("/")
        rule = self._store.rule_by_key(f"{key}@{rule_id}")
        return f"{key}/{repo}" if registry and rule is not None and repo else None

    def _is_tenancy_path(self, name: str) -> bool:
        first, sep, _ = name.partition("/")
        return bool(sep) and self._store.tenancy(first) is not None


class Authorizer:
    """Applies public flags, administrators groups and tenancy policies."""

    def __init__(
        self, store: IdentityStore, *, admin_tenancy: str, default_tenancy: str, public_proxy: bool
    ) -> None:
        self._store = store
        self.admin_tenancy = admin_tenancy
        self._default = default_tenancy
        self._public_proxy = public_proxy

    def is_public(self, ref: RepoRef) -> bool:
        """Anyone may pull: a public repository, or a public proxy of the default tenancy."""
        if ref.proxy and self._public_proxy and ref.tenancy == self._default:
            return True
        record = self._store.repository(ref.tenancy, ref.name)
        return record is not None and record.public

    def is_system_admin(self, principal: Principal) -> bool:
        """A member of the admin tenancy's administrators group: may do everything."""
        return self.is_tenancy_admin(principal, self.admin_tenancy)

    def is_tenancy_admin(self, principal: Principal, tenancy: str) -> bool:
        """A member of ``tenancy``'s administrators group (or a system administrator)."""
        if principal.user is None or principal.tenancy is None:
            return False
        if principal.tenancy == tenancy:
            groups = self._store.groups_of(tenancy, principal.user)
            if ADMINISTRATORS in groups:
                return True
        return tenancy != self.admin_tenancy and self.is_system_admin(principal)

    def permits_tag_listing(self, principal: Principal, ref: RepoRef) -> bool:
        """Whether ``principal`` may list ``ref``'s tags: anyone when it is public (public
        means pull and list tags, so anonymous ``skopeo inspect`` works), else by policy."""
        return self.is_public(ref) or self.permits(principal, ref, Verb.INSPECT)

    def permits(self, principal: Principal, ref: RepoRef, needed: Verb) -> bool:
        """Whether ``principal`` may do ``needed`` to ``ref``, by the current policies."""
        if needed is Verb.READ and self.is_public(ref):
            return True
        if principal.user is None or principal.tenancy is None:
            return False
        if self.is_tenancy_admin(principal, ref.tenancy):
            return True
        if principal.tenancy != ref.tenancy:
            return False
        groups = self._store.groups_of(ref.tenancy, principal.user)
        return allows(self._store.statements(ref.tenancy), groups, ref.name, needed)
