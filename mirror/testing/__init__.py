"""Helpers for tests, the ``mirror demo`` command and benchmarks: build OCI images with the
standard library and run real peers (``docker-registry``, ``skopeo``, ``containerd``) on
127.0.0.1. Nothing here is imported by the mirror itself."""
