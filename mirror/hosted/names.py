"""Where hosted content is recorded in the metadata store."""


def hosted_key(tenancy: str) -> str:
    """The upstream key a tenancy's hosted repositories are recorded under."""
    return f"hosted:{tenancy}"
