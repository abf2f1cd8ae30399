"""HTTP layer: the OCI distribution read API, one module per endpoint family."""
