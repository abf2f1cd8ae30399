"""Encryption at rest: key-encryption keys, the chunked AEAD object format, key sources."""
