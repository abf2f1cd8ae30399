"""A regional pull-through caching mirror for OCI container images."""

__version__ = "0.1.0"
