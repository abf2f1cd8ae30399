"""How retention policies name repositories: ``HOST/REPO`` of a cached repository (its
upstream key and repository there), and ``<tenancy>/<repo>`` of a hosted one, the name its
users push and pull it by (never its ``hosted:<tenancy>`` key)."""

from __future__ import annotations

from collections.abc import Callable

from mirror.errors import RegistryError
from mirror.hosted.names import HOSTED_PREFIX
from mirror.oci.names import validate_name
from mirror.upstream.routing import Router


def policy_name(upstream: str, repo: str) -> str:
    """The name policies give ``repo`` kept under ``upstream``."""
    if upstream.startswith(HOSTED_PREFIX):
        return f"{upstream[len(HOSTED_PREFIX) :]}/{repo}"
    return f"{upstream}/{repo}"


def resolve_policy_repository(
    router: Router, name: str, hosted: Callable[[str], bool] = lambda _: False
) -> str:
    """A repository as a client names it, as policies name it: a hosted repository (by
    ``hosted``, or a ``<tenancy>/<repo>`` no upstream serves) keeps its name; anything else
    is resolved like a pull (``library/alpine`` is the default upstream's)."""
    if hosted(name):
        return validate_name(name)
    try:
        target = router.resolve(name, None)
    except RegistryError:
        if "/" in name:
            return validate_name(name)
        raise
    return policy_name(target.upstream, target.repo)
