"""Hosted repositories: content pushed into ``<tenancy>/<repo>``, with no upstream behind it."""
