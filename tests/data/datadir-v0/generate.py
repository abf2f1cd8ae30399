"""Run with the pre-restructure tree (commit 71f90d6) on PYTHONPATH to write this directory
again: the three databases (metadata, retention, identity) with one record of every stored class."""
import sys
from pathlib import Path
from mirror.store.metadata import Metadata, TagRecord, ManifestRecord
from mirror.store.retention import RetentionStore, Policy
from mirror.identity.store import IdentityStore
from mirror.identity.records import PullThroughRule

out = Path(sys.argv[1])
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
m = Metadata(out / "metadata")
m.set_tag("docker.io", "library/alpine", "3", TagRecord(A, "application/vnd.oci.image.manifest.v1+json", 512, 1000.0))
m.set_tag("docker.io", "library/alpine", "3", TagRecord(B, "application/vnd.oci.image.manifest.v1+json", 600, 1500.0))
m.set_manifest(A, ManifestRecord("application/vnd.oci.image.manifest.v1+json", 512, (B,), 1000.0))
m.add_repository("docker.io", "library/alpine")
m.link("docker.io", "library/alpine", [A, B])
from mirror.store.metadata import CachedResponse
m.set_response("tags", "docker.io", "library/alpine", "", CachedResponse(b'{"tags":["3"]}', "application/json", (("Link", "x"),), 1000.0))
m.record_pull("docker.io", "library/alpine", A, 2000.0)
m.flush()
m.close()
r = RetentionStore(out / "retention")
r.create(Policy("stale", not_pulled_days=30.0, exempt_tags=("release-*",)), 1000.0)
r.attach("stale", "docker.io/library/alpine", 1000.0)
r.close()
i = IdentityStore(out / "identity")
i.create_tenancy("acme", 1000.0)
i.create_user("acme", "dev", 1000.0)
i.create_group("acme", "devs")
i.set_member("acme", "devs", "dev", True)
token, secret = i.create_token("acme", "dev", "laptop", 1000.0, cost=2)
i.set_policy("acme", "pull", ["allow group devs to read repos in tenancy"])
i.create_repository("acme", "team/app", 1000.0, public=True)
i.create_rule(PullThroughRule("acme", "hub", "https://registry-1.docker.io", "u", "p", 1000.0))
i.close()
print(token.id, secret)
