"""In-process and pure helpers for tests, the ``mirror demo`` command and benchmarks: build
OCI images (:mod:`.images`) and serve them from an in-process registry (:mod:`.registry`).
Process runners for real peers live under ``tests/peers``. Nothing here is imported by the
mirror itself."""
