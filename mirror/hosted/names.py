"""Where hosted content is recorded: the metadata store's upstream key of a tenancy's hosted
repositories (links, tags and manifests are kept under ``(hosted_key(tenancy), repo)``)."""

from __future__ import annotations

HOSTED_PREFIX = "hosted:"


def hosted_key(tenancy: str) -> str:
    """The metadata upstream key of ``tenancy``'s hosted repositories (never a rule's key:
    rule keys and upstream hosts hold no ``:``)."""
    return f"{HOSTED_PREFIX}{tenancy}"


# The kind of the per-subject referrers record of a hosted repository (a ``CachedResponse``
# under ``(hosted_key(tenancy), repo, subject)``, never expiring): the referrer descriptors.
REFERRERS = "hosted-referrers"
