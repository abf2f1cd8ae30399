"""What the handlers need, wired once by the app and stored under one typed ``AppKey``."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from mirror.db.metadata import Metadata
from mirror.errors import ErrorCode, RegistryError
from mirror.metrics import Metrics
from mirror.pullthrough.blobs import BlobService
from mirror.pullthrough.listing import ListingService
from mirror.pullthrough.manifests import ManifestService
from mirror.upstream.routing import Router, Target


@dataclass(frozen=True)
class Services:
    """The services behind the routes."""

    router: Router
    blobs: BlobService
    manifests: ManifestService
    listing: ListingService
    metadata: Metadata
    metrics: Metrics


SERVICES = web.AppKey("services", Services)
# The target resolved by the auth middleware (tenancy repositories and their rules), if any.
TARGET = web.RequestKey("target", Target)


def services(request: web.Request) -> Services:
    """The app's services."""
    return request.app[SERVICES]


def target(request: web.Request) -> Target:
    """Resolve the request's repository name and ``?ns=`` to an upstream target."""
    resolved = request.get(TARGET)
    if resolved is not None:
        return resolved
    name = request.match_info.get("name")
    if name is None:
        raise RegistryError(ErrorCode.NAME_INVALID)
    return services(request).router.resolve(name, request.query.get("ns"))
