"""Pure cryptography: the chunked AEAD object format and key-encryption keys (encryption at
rest), key sources, signed bearer tokens and slow salted hashes of secrets."""
