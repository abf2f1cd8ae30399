"""Stores: the content-addressed blob cache and the metadata about what it holds."""
