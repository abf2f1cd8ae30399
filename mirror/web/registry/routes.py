"""The route table. Upload routes come first so ``blobs/uploads/`` never parses as a digest."""

from __future__ import annotations

from aiohttp import web

from mirror.web.registry import base, blobs, listing, manifests, removal, uploads

NAME = r"{name:[^{}]+?}"


def add_routes(app: web.Application) -> None:
    """Register every endpoint: reads, manifest pushes and deletions (hosted repositories),
    and the refusals of what is not served."""
    r = app.router
    r.add_get("/v2/", base.version_check)
    r.add_get("/v2", base.version_check)
    r.add_get("/v2/_catalog", listing.catalog)
    r.add_post(f"/v2/{NAME}/blobs/uploads/", uploads.start)
    r.add_patch(f"/v2/{NAME}/blobs/uploads/{{uuid}}", uploads.patch)
    r.add_put(f"/v2/{NAME}/blobs/uploads/{{uuid}}", uploads.finish)
    r.add_get(f"/v2/{NAME}/blobs/uploads/{{uuid}}", uploads.status, allow_head=False)
    r.add_delete(f"/v2/{NAME}/blobs/uploads/{{uuid}}", uploads.cancel)
    for method in ("POST", "PUT", "PATCH", "DELETE", "GET"):
        r.add_route(method, f"/v2/{NAME}/blobs/uploads/{{rest:.*}}", base.unsupported)
    r.add_get(f"/v2/{NAME}/blobs/{{digest}}", blobs.blob)
    r.add_route("DELETE", f"/v2/{NAME}/blobs/{{digest}}", removal.delete_blob)
    r.add_get(f"/v2/{NAME}/manifests/{{reference}}", manifests.manifest)
    r.add_route("PUT", f"/v2/{NAME}/manifests/{{reference}}", manifests.put_manifest)
    r.add_route("DELETE", f"/v2/{NAME}/manifests/{{reference}}", manifests.delete_manifest)
    r.add_get(f"/v2/{NAME}/tags/list", listing.tags)
    r.add_get(f"/v2/{NAME}/referrers/{{digest}}", listing.referrers)
    r.add_get("/metrics", base.metrics)
    r.add_get("/healthz", base.healthz)
    r.add_get("/readyz", base.readyz)
