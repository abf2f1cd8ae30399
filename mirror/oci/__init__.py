"""Pure OCI nouns: digests, names, references, media types. No I/O."""
