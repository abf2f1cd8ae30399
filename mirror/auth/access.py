"""Where a repository name lives (tenancy, name in it, upstream) and what a caller may do.

Paths are ``<tenancy>/<repo>`` when the first component is a tenancy; anything else (and any
request with ``?ns=``) is a proxy repository of the configured default tenancy, routed to a
configured upstream by the :class:`~mirror.upstream.routing.Router` and named
``<upstream>/<repo>`` in that tenancy. A tenancy repository is pulled through the tenancy's
rule with the longest prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirror.auth.policy.evaluate import allows
from mirror.auth.policy.grammar import Verb
from mirror.auth.principal import Principal
from mirror.db.identity.records import ADMINISTRATORS, PullThroughRule
from mirror.db.identity.store import IdentityStore
from mirror.errors import ErrorCode, RegistryError
from mirror.oci.names import validate_name
from mirror.upstream.routing import Router, Target


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
        return self.target is not None


class Resolver:
    """Resolves request paths to repositories and rules."""

    def __init__(self, store: IdentityStore, router: Router, default_tenancy: str) -> None:
        self._store = store
        self._router = router
        self._default = default_tenancy

    def locate(self, path: str, ns: str | None) -> RepoRef:
        """The repository a request path (and ``?ns=``) names; ``NAME_UNKNOWN``/``INVALID``."""
        if ns is None:
            first, sep, rest = path.partition("/")
            if sep and self._store.tenancy(first) is not None:
                return RepoRef(first, validate_name(rest), path)
        if not self._default or self._store.tenancy(self._default) is None:
            raise RegistryError(
                ErrorCode.NAME_UNKNOWN, "no tenancy for this name", detail={"name": path}
            )
        target = self._router.resolve(path, ns)
        return RepoRef(self._default, f"{target.upstream}/{target.repo}", path, target)

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
