"""Hosted repositories: content pushed into a tenancy, not cached from an upstream."""
