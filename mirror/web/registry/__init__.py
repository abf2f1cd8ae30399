"""The OCI distribution API (spec v1.1): one module per endpoint family, and the token endpoint."""
